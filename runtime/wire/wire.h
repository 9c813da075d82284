/*  wire.h — the Switchboard message header: its fields, encoder, decoder.

    Every message between a peer and a broker is one or two ZeroMQ frames:
    a small MessagePack header, then an optional body.  A body of at most
    SB_INLINE_MAX bytes travels inside the header frame, as its `body`
    field (one frame per message: each frame costs libzmq work, and a
    CURVE box, on every hop); a larger one is a second frame.  Brokers
    decode the header only; bodies travel as opaque bytes (see
    docs/protocol.md, which this file implements and which must change
    with it).

    The header is a MessagePack map whose keys are small unsigned integers
    (SB_K_*).  Unknown keys are skipped, so new fields never break old
    peers; a different major version (SB_K_VERSION) is refused.

    The decoder never trusts its input: sizes and types are checked, strings
    are bounded and copied into the fixed-size fields of sb_header_t, so a
    decoded header owns no memory and borrows nothing from its frame but
    the inline body (`body`, valid only while the frame is).

    Also here: sb_wire_check(), a linear pre-scan that rejects MessagePack
    whose declared array/map/str sizes exceed the bytes present or whose
    nesting is too deep, before msgpack-c is allowed to allocate for it,
    and the body decoder built on it (body.c).
*/
#ifndef SB_WIRE_H_INCLUDED
#define SB_WIRE_H_INCLUDED

#include "switchboard.h"

#define SB_PROTOCOL_VERSION 1

/*  Limits (also in docs/protocol.md; names and bodies: switchboard.h).  */
#define SB_HEADER_MAX 2048              /* bytes in a header frame, inline body field aside */
#define SB_INLINE_MAX 4096              /* bytes of a body sent inside the header frame */
/*  Largest header frame: the header, then the body field (a key byte, a
    bin tag of at most 5 bytes, the body).  */
#define SB_FRAME_HEADER_MAX (SB_HEADER_MAX + 6 + SB_INLINE_MAX)
#define SB_TEXT_MAX 255                 /* error message */
#define SB_KEYID_MAX 32
#define SB_DEPTH_MAX 32                 /* nesting of MessagePack bodies */
/*  The contract a READY carries (docs/protocol.md 5.2): a method's
    timeout_ms and cache_ttl_ms are at most SB_CONTRACT_MS_MAX, and the
    service's schema text at most SB_READY_SCHEMA_MAX bytes (a longer one
    is not announced; brokers drop it from a READY).  */
#define SB_CONTRACT_MS_MAX 86400000
#define SB_READY_SCHEMA_MAX (64 * 1024)

/*  Commands.  */
typedef enum {
    SB_CMD_HELLO = 1,       /* peer -> broker: I am here (name) */
    SB_CMD_WELCOME = 2,     /* broker -> peer: answer to HELLO (broker name, heartbeat) */
    SB_CMD_READY = 3,       /* worker -> broker: I offer service S with capacity N; body: methods */
    SB_CMD_REQUEST = 4,     /* caller -> broker -> worker */
    SB_CMD_REPLY = 5,       /* worker -> broker -> caller */
    SB_CMD_ERROR = 6,       /* broker or worker -> caller: code + text */
    SB_CMD_PUBLISH = 7,     /* publisher -> broker -> subscribers */
    SB_CMD_SUBSCRIBE = 8,   /* peer -> broker: topic prefix, optional group */
    SB_CMD_UNSUBSCRIBE = 9,
    SB_CMD_HEARTBEAT = 10,  /* either way, when nothing else was sent for an interval */
    SB_CMD_BYE = 11,        /* either way: I am leaving (worker: withdraw all services) */
    SB_CMD_PEER = 12,       /* broker <-> broker: hello between cluster members */
    SB_CMD_DIRECTORY = 13,  /* broker <-> broker: services I host; body: directory */
    SB_CMD_MAX = 13
} sb_cmd_t;

/*  Header keys.  */
typedef enum {
    SB_K_VERSION = 0,       /* uint: protocol major version; required */
    SB_K_COMMAND = 1,       /* uint: sb_cmd_t; required */
    SB_K_REQUEST_ID = 2,    /* uint64: chosen by the sender of REQUEST, echoed */
    SB_K_SERVICE = 3,       /* str */
    SB_K_METHOD = 4,        /* str */
    SB_K_TIMEOUT = 5,       /* uint: ms left before the deadline, relative */
    SB_K_FLAGS = 6,         /* uint: SB_F_* */
    SB_K_CODE = 7,          /* uint: sb_code_t, in ERROR */
    SB_K_TEXT = 8,          /* str: error text, in ERROR */
    SB_K_CAPACITY = 9,      /* uint: READY: requests the worker can hold at once */
    SB_K_TOPIC = 10,        /* str: PUBLISH, SUBSCRIBE */
    SB_K_GROUP = 11,        /* str: SUBSCRIBE (balanced group), PUBLISH as delivered */
    SB_K_NAME = 12,         /* str: HELLO/WELCOME/PEER: name of the sender */
    SB_K_TRACE = 13,        /* bin 16: W3C trace id */
    SB_K_SPAN = 14,         /* bin 8: parent span id */
    SB_K_KEY_ID = 15,       /* bin <= 32: caller's key id (sealed bodies) */
    SB_K_HEARTBEAT = 16,    /* uint: WELCOME: heartbeat interval in ms */
    SB_K_HOPS = 17,         /* uint: broker-to-broker hops taken */
    SB_K_INSTANCE = 18,     /* uint: READY: instance number */
    SB_K_BODY = 19,         /* bin 1..SB_INLINE_MAX: the body, inline */
    SB_K_MAX = 19
} sb_key_t;

/*  Flags.  */
#define SB_F_IDEMPOTENT 0x01    /* REQUEST: may be run again (retry, re-dispatch) */
#define SB_F_SEALED 0x02        /* body is sealed end to end (crypto_box) */
#define SB_F_NO_REPLY 0x04      /* REQUEST: caller wants no answer */
#define SB_F_RETRY 0x08         /* REQUEST: this is a retry of an earlier id */
#define SB_F_UNROUTED 0x10      /* ERROR: from the broker itself, no service saw the request */

/*  Which optional fields a decoded header carried.  */
#define SB_H_REQUEST_ID (1u << SB_K_REQUEST_ID)
#define SB_H_SERVICE (1u << SB_K_SERVICE)
#define SB_H_METHOD (1u << SB_K_METHOD)
#define SB_H_TIMEOUT (1u << SB_K_TIMEOUT)
#define SB_H_CODE (1u << SB_K_CODE)
#define SB_H_CAPACITY (1u << SB_K_CAPACITY)
#define SB_H_TOPIC (1u << SB_K_TOPIC)
#define SB_H_GROUP (1u << SB_K_GROUP)
#define SB_H_NAME (1u << SB_K_NAME)
#define SB_H_TRACE (1u << SB_K_TRACE)
#define SB_H_SPAN (1u << SB_K_SPAN)
#define SB_H_KEY_ID (1u << SB_K_KEY_ID)
#define SB_H_BODY (1u << SB_K_BODY)

typedef struct {
    uint32_t present;           /* SB_H_* bits of the optional fields seen */
    uint32_t version;
    uint32_t command;
    uint64_t request_id;
    uint32_t timeout_ms;
    uint32_t flags;
    uint32_t code;
    uint32_t capacity;
    uint32_t heartbeat_ms;
    uint32_t hops;
    uint32_t instance;
    uint8_t trace [16];
    uint8_t span [8];
    uint8_t key_id [SB_KEYID_MAX];
    uint8_t key_id_size;
    /*  The inline body as decoded: points into the decoded frame.  Never
        written by the encoder (see sb_header_encode_inline).  */
    const uint8_t *body;
    uint32_t body_size;
    /*  Decoded only: where request_id's value starts in the frame (its
        type byte), so that a broker may rewrite it in place.  */
    uint16_t request_id_at;
    /*  Strings last, `service` first: the decoder clears everything before
        `service` and only the first byte of each string.  */
    char service [SB_NAME_MAX + 1];
    char method [SB_NAME_MAX + 1];
    char group [SB_NAME_MAX + 1];
    char name [SB_NAME_MAX + 1];
    char topic [SB_TOPIC_MAX + 1];
    char text [SB_TEXT_MAX + 1];
} sb_header_t;

/*  Why a frame was refused: the decoder's reasons, counted by brokers.  */
typedef enum {
    SB_WIRE_OK = 0,
    SB_WIRE_MALFORMED,          /* not a MessagePack map, truncated, trailing bytes */
    SB_WIRE_OVERSIZED,          /* header frame too long (SB_HEADER_MAX, inline body aside) */
    SB_WIRE_BAD_VERSION,        /* missing or other major version */
    SB_WIRE_BAD_COMMAND,        /* missing or unknown command */
    SB_WIRE_BAD_FIELD,          /* a known field with the wrong type or size */
    SB_WIRE_REASON_MAX
} sb_wire_reason_t;

const char *sb_wire_reason_name (sb_wire_reason_t reason);

/*  Empties every field (scalars zero, strings ""; the bytes after a
    string's NUL are left as they were) and sets version and command.  */
void sb_header_init (sb_header_t *header, sb_cmd_t command);

/*  Sets a string field and its presence bit, truncating to the field's size.
    Returns -1 if the value was too long or not a valid name (nothing set).  */
int sb_header_set_service (sb_header_t *header, const char *service);
int sb_header_set_method (sb_header_t *header, const char *method);
int sb_header_set_topic (sb_header_t *header, const char *topic);
int sb_header_set_group (sb_header_t *header, const char *group);
int sb_header_set_name (sb_header_t *header, const char *name);
void sb_header_set_text (sb_header_t *header, const char *text);

/*  Encodes into buffer (which must hold SB_HEADER_MAX bytes); returns the
    encoded size.  Only present fields, and non-zero scalars, are written;
    never the inline body.  Writes bytes directly: no allocation.  */
size_t sb_header_encode (const sb_header_t *header, uint8_t *buffer);

/*  The same, for a frame that carries a body of body_size bytes (1..
    SB_INLINE_MAX, which the caller checks) inline: the header ends with the body field's key and
    bin tag, and the caller appends the body_size bytes right after the
    returned size.  The buffer must hold SB_HEADER_MAX bytes.  */
size_t sb_header_encode_inline (const sb_header_t *header, size_t body_size, uint8_t *buffer);

/*  Decodes a header frame.  Returns SB_WIRE_OK or the reason for refusal.
    The header is fully overwritten either way.  A frame longer than
    SB_HEADER_MAX is refused as oversized unless all of it but a
    well-formed inline body field fits SB_HEADER_MAX.  */
sb_wire_reason_t sb_header_decode (sb_header_t *header, const void *data, size_t size)
    SB_WARN_UNUSED;

/*  Pre-scans a MessagePack buffer holding exactly one object: 0 if every
    declared length fits in the buffer and nesting is at most max_depth;
    -1 otherwise.  Costs one pass; allocates nothing.  */
int sb_wire_check (const void *data, size_t size, int max_depth) SB_WARN_UNUSED;

/*  Decodes a body (size 0: nil) into obj, which borrows from data and
    from `unpacked` (initialised by the caller, who destroys it).  The
    pre-scan (sb_wire_check) runs first, so a hostile body costs one pass
    and no allocation.  0, or -1 if it is not one valid object.  */
int sb_wire_decode (const void *data, size_t size, msgpack_unpacked *unpacked,
                    msgpack_object *obj) SB_WARN_UNUSED;
/*  The same into a zone the caller keeps from message to message (no
    allocation once the zone's first chunk is there).  obj borrows from
    data and zone until the caller clears the zone (msgpack_zone_clear,
    which also gives back the chunks a large object needed).  */
int sb_wire_decode_zone (const void *data, size_t size, msgpack_zone *zone,
                         msgpack_object *obj) SB_WARN_UNUSED;

#endif
