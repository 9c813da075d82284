/*  framing.c — how the REST bridge delimits request bodies (see
    framing.h).

    RFC 9112, section 6.  libmicrohttpd 0.9.75 lets Transfer-Encoding win
    over Content-Length, reads only the first Content-Length, and reads a
    body with any transfer coding other than exactly "chunked" until the
    connection closes.  A proxy in front that delimited the request
    otherwise would see a second request smuggled in the first.  So the
    bridge refuses (400) a head with both fields, Content-Lengths that
    differ or are not plain decimal, or Transfer-Encoding in HTTP/1.0, and
    answers 501 to a transfer coding other than chunked; http.c closes the
    connection after either.  Equal Content-Lengths are one (RFC 9110,
    section 8.6).  A first Content-Length that is not a number at all
    never reaches the bridge: libmicrohttpd answers it with its own 400.
*/
#include "framing.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

typedef struct {
    unsigned lengths;                   /* Content-Length fields */
    unsigned long long length;          /* the first one's value */
    bool length_bad;                    /* one is not plain decimal */
    bool lengths_differ;
    bool encoded;                       /* a Transfer-Encoding field */
    unsigned chunked;                   /* "chunked" codings */
    bool chunked_not_last;
    char other [32];                    /* the first other coding, or "" */
} s_framing_t;

/*  Trims optional white space (RFC 9110 section 5.6.3) off [*start, *end). */
static void
s_trim (const char **start, const char **end)
{
    while (*start < *end && (**start == ' ' || **start == '\t'))
        (*start)++;
    while (*end > *start && ((*end) [-1] == ' ' || (*end) [-1] == '\t'))
        (*end)--;
}

static enum MHD_Result
s_framing_field (void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void) kind;
    s_framing_t *framing = cls;
    if (!key || !value)
        return MHD_YES;
    if (!strcasecmp (key, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
        const char *start = value, *end = value + strlen (value);
        s_trim (&start, &end);
        size_t digits = (size_t) (end - start);
        unsigned long long length = 0;
        if (digits == 0 || digits > 19 || strspn (start, "0123456789") < digits)
            framing->length_bad = true;
        else
            length = strtoull (start, NULL, 10);
        if (framing->lengths++ == 0)
            framing->length = length;
        else
        if (length != framing->length)
            framing->lengths_differ = true;
    }
    else
    if (!strcasecmp (key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        framing->encoded = true;
        const char *cursor = value;
        while (*cursor) {
            const char *start = cursor, *end = cursor + strcspn (cursor, ",");
            cursor = *end ? end + 1 : end;
            s_trim (&start, &end);
            if (start == end)
                continue;
            if (framing->chunked)
                framing->chunked_not_last = true;
            if (end - start == 7 && !strncasecmp (start, "chunked", 7))
                framing->chunked++;
            else
            if (!framing->other [0])
                snprintf (framing->other, sizeof framing->other, "%.*s", (int) (end - start), start);
        }
    }
    return MHD_YES;
}

int
sb_rest_framing_check (struct MHD_Connection *connection, const char *version,
                       char *why, size_t size)
{
    s_framing_t framing = { 0 };
    MHD_get_connection_values (connection, MHD_HEADER_KIND, s_framing_field, &framing);
    const char *reason = NULL;
    if (framing.encoded && framing.lengths)
        reason = "Content-Length and Transfer-Encoding together";
    else
    if (framing.length_bad)
        reason = "Content-Length is not a plain decimal number";
    else
    if (framing.lengths_differ)
        reason = "Content-Length values differ";
    else
    if (framing.encoded && !strcmp (version, MHD_HTTP_VERSION_1_0))
        reason = "Transfer-Encoding in an HTTP/1.0 request";
    else
    if (framing.encoded && !framing.other [0] && (framing.chunked != 1 || framing.chunked_not_last))
        reason = "Transfer-Encoding must end with chunked, once";
    else
    if (framing.other [0]) {
        snprintf (why, size, "Transfer-Encoding '%s' is not supported; only chunked is", framing.other);
        return MHD_HTTP_NOT_IMPLEMENTED;
    }
    if (!reason)
        return 0;
    snprintf (why, size, "%s", reason);
    return MHD_HTTP_BAD_REQUEST;
}

void
sb_rest_framing_answer (int fd, int status, const char *reason, const char *headers,
                        const char *body, size_t size)
{
    char date [64];
    time_t now = time (NULL);
    struct tm tm;
    strftime (date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime_r (&now, &tm));
    char head [2048];
    int head_size = snprintf (head, sizeof head,
        "HTTP/1.1 %d %s\r\nDate: %s\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n",
        status, reason, date, headers, size);
    if (head_size < 0 || (size_t) head_size >= sizeof head)
        head_size = snprintf (head, sizeof head, "HTTP/1.1 %d %s\r\nConnection: close\r\n"
                              "Content-Length: 0\r\n\r\n", status, reason), size = 0;
    struct iovec parts [2] = {
        { head, (size_t) head_size }, { (void *) body, size }
    };
    struct msghdr answer = { .msg_iov = parts, .msg_iovlen = 2 };
    ssize_t sent = sendmsg (fd, &answer, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void) sent;                /* short or failed: the client left */
    shutdown (fd, SHUT_WR);
}
