/*  runtime_validation.t — request validation by the service runtime.

    Two services with the same handlers run as instances against a real
    in-process broker on a free loopback port: `val`, started with a schema
    set (sb_instance_start_with) and reply checking on, and `raw`, started
    the old way (sb_instance_start, no schemas).  A client calls both: a
    conforming request reaches the handler; a violating one is answered
    bad_request with the path of the first violation and the handler never
    runs, whichever client sent it.  Also: methods without a schema are not
    validated, replies are checked only when asked, and
    sb_schema_set_check_service finds where a plugin and its schema file
    disagree.  Every wait is bounded.
*/
#include "broker/broker.h"
#include "host/instance.h"
#include "schema/schema.h"
#include "tap.h"

#include <czmq.h>
#include <string.h>

/*  Handler runs, per service (0 val, 1 raw), counted on the actor threads
    and read by the test after the reply has come back.  */
static volatile int s_greets [2];
static volatile int s_frees [2];

static int
s_slot (sb_request_t *req)
{
    return strcmp (sb_request_service (req), "val") == 0 ? 0 : 1;
}

/*  {"text": S} -> {"text": "hello, S"}; any other body -> {"text": null}.  */
static int
s_greet (sb_request_t *req, const msgpack_object *body, void *state)
{
    s_greets [s_slot (req)]++;
    msgpack_packer *pk = sb_reply_begin (req);
    msgpack_pack_map (pk, 1);
    msgpack_pack_str_with_body (pk, "text", 4);
    const msgpack_object *text = NULL;
    if (body->type == MSGPACK_OBJECT_MAP && body->via.map.size == 1)
        text = &body->via.map.ptr [0].val;
    if (text && text->type == MSGPACK_OBJECT_STR) {
        char buf [128];
        int n = snprintf (buf, sizeof buf, "hello, %.*s",
                          (int) (text->via.str.size > 100 ? 100 : text->via.str.size),
                          text->via.str.ptr);
        msgpack_pack_str_with_body (pk, buf, (size_t) n);
    }
    else
        msgpack_pack_nil (pk);
    return sb_reply_send (req);
}

/*  No schema: anything is accepted and echoed.  */
static int
s_free (sb_request_t *req, const msgpack_object *body, void *state)
{
    s_frees [s_slot (req)]++;
    msgpack_pack_object (sb_reply_begin (req), *body);
    return sb_reply_send (req);
}

/*  Its reply breaks the reply schema ({"text": integer}).  */
static int
s_liar (sb_request_t *req, const msgpack_object *body, void *state)
{
    static const unsigned char reply [] = { 0x81, 0xa4, 't', 'e', 'x', 't', 0x05 };
    return sb_reply_bytes (req, reply, sizeof reply);
}

static const sb_method_t s_methods [] = {
    { "greet", s_greet, SB_METHOD_IDEMPOTENT },
    { "free", s_free, 0 },
    { "liar", s_liar, 0 },
    { NULL, NULL, 0 }
};

static const sb_service_t s_val = {
    .abi_version = SB_ABI_VERSION, .name = "val", .version = "1.0.0", .methods = s_methods
};
static const sb_service_t s_raw = {
    .abi_version = SB_ABI_VERSION, .name = "raw", .version = "1.0.0", .methods = s_methods
};

static const char s_schema_json [] =
    "{ \"service\": \"val\", \"version\": \"1.0.0\", \"methods\": {"
    "  \"greet\": { \"idempotent\": true,"
    "    \"request\": { \"type\": \"object\","
    "                   \"properties\": { \"text\": { \"type\": \"string\", \"maxLength\": 8 } },"
    "                   \"required\": [\"text\"], \"additionalProperties\": false },"
    "    \"reply\": { \"type\": \"object\","
    "                 \"properties\": { \"text\": { \"type\": \"string\" } } } },"
    "  \"liar\": { \"idempotent\": false,"
    "    \"reply\": { \"type\": \"object\","
    "                 \"properties\": { \"text\": { \"type\": \"string\" } } } }"
    "} }";

/*  The same service as a file that disagrees with the plugin.  */
static const char s_wrong_json [] =
    "{ \"service\": \"val\", \"version\": \"1.0.0\", \"methods\": {"
    "  \"greet\": { \"idempotent\": false },"
    "  \"ghost\": { \"idempotent\": true },"
    "  \"free\": { \"idempotent\": false }"
    "} }";

/*  Calls until the service is known to the broker (instances announce
    themselves asynchronously), then returns the call's result.  */
static int
s_call (sb_client_t *client, const char *service, const char *method, const char *json,
        sb_reply_t **reply, sb_error_t *err)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    sb_error_t jerr = { 0 };
    if (json && sb_json_to_msgpack (json, strlen (json), &body, &jerr)) {
        tap_diag ("bad test JSON %s: %s", json, jerr.text);
        msgpack_sbuffer_destroy (&body);
        return -1;
    }
    int64_t end = zclock_mono () + 10000;
    int rc = -1;
    while (zclock_mono () < end) {
        rc = sb_client_call (client, service, method, body.data, body.size, 2000, reply, err);
        if (rc == 0 || (err->code != SB_E_NOT_FOUND && err->code != SB_E_UNAVAILABLE))
            break;
        zclock_sleep (50);
    }
    msgpack_sbuffer_destroy (&body);
    return rc;
}

/*  The reply body as JSON (static buffer), or the error as "code: text". */
static const char *
s_result (int rc, sb_reply_t **reply, const sb_error_t *err)
{
    static char text [512];
    if (rc == 0) {
        char *json = sb_msgpack_to_json (&(*reply)->body, NULL);
        snprintf (text, sizeof text, "%s", json ? json : "(not JSON)");
        free (json);
        sb_reply_destroy (reply);
    }
    else
        snprintf (text, sizeof text, "%s: %s", sb_code_name (err->code), err->text);
    return text;
}

static const char *
s_try (sb_client_t *client, const char *service, const char *method, const char *json)
{
    sb_reply_t *reply = NULL;
    sb_error_t err = { 0 };
    int rc = s_call (client, service, method, json, &reply, &err);
    return s_result (rc, &reply, &err);
}

int
main (void)
{
    zsys_handler_set (NULL);
    sb_error_t err = { 0 };

    /*  Plugin and schema file agreement, as `sb run` checks at start.  */
    sb_schema_set_t *wrong = sb_schema_set_new ();
    int rc = sb_schema_set_load_buffer (wrong, "wrong.json", s_wrong_json, strlen (s_wrong_json),
                                        &err);
    tap_ok (rc == 0, "the disagreeing schema file loads (%s)", rc ? err.text : "");
    tap_is_int (sb_schema_set_check_service (wrong, &s_val, &err), 2,
                "two disagreements: a method the plugin lacks, another idempotent flag");
    tap_is_str (err.text, "val.ghost: in the schema, not in the plugin; "
                "val.greet: not idempotent in the schema, idempotent in the plugin",
                "listed on one line");
    tap_is_int (sb_schema_set_check_service (wrong, &s_raw, &err), 0,
                "a service the set does not describe has nothing to disagree with");
    sb_schema_set_destroy (&wrong);

    sb_schema_set_t *schemas = sb_schema_set_new ();
    rc = schemas ? sb_schema_set_load_buffer (schemas, "val.json", s_schema_json,
                                              strlen (s_schema_json), &err) : -1;
    tap_ok (rc == 0, "schema loads (%s)", rc ? err.text : "");
    tap_is_int (sb_schema_set_check_service (schemas, &s_val, &err), 0,
                "the plugin agrees with its schema file (free has no schema, which is fine)");

    sb_broker_config_t config = { .bind = "tcp://127.0.0.1:*", .heartbeat_ms = 250 };
    sb_broker_t *broker = sb_broker_new (&config, &err);
    if (!broker)
        tap_skip_all ("cannot start a broker");
    char endpoint [256];
    snprintf (endpoint, sizeof endpoint, "%s", sb_broker_endpoint (broker));

    sb_instance_options_t options = { .schemas = schemas, .validate_replies = true };
    sb_instance_t *val = sb_instance_start_with (&s_val, 0, NULL, endpoint, 10, &options, &err);
    tap_ok (val != NULL, "instance with schemas starts");
    sb_instance_t *raw = sb_instance_start (&s_raw, 0, NULL, endpoint, 10, &err);
    tap_ok (raw != NULL, "instance without schemas starts the old way");
    sb_client_options_t client_options = { .endpoints = endpoint, .timeout_ms = 3000 };
    sb_client_t *client = sb_client_new (&client_options, &err);
    tap_ok (client != NULL, "client connects");
    if (!val || !raw || !client)
        return tap_done ();

    /*  A conforming request reaches the handler.  (tap_is_str evaluates
        its arguments twice, so every call goes to `got` first.)  */
    const char *got = s_try (client, "val", "greet", "{\"text\": \"bob\"}");
    tap_is_str (got, "{\"text\":\"hello, bob\"}", "a valid request is answered by the handler");
    tap_is_int (s_greets [0], 1, "the handler ran once");

    /*  Violations: bad_request with the path, the handler never runs.  */
    got = s_try (client, "val", "greet", "{\"text\": 5}");
    tap_is_str (got, "bad_request: $.text: expected string, got integer",
                "a wrong type is bad_request with its path");
    got = s_try (client, "val", "greet", "{\"text\": \"bob\", \"x\": [1]}");
    tap_ok (strncmp (got, "bad_request: $.x: ", 18) == 0,
            "an unexpected property is bad_request at its path (%s)", got);
    got = s_try (client, "val", "greet", "{}");
    tap_ok (strncmp (got, "bad_request: $: ", 16) == 0 && strstr (got, "text"),
            "a missing required property is bad_request naming it (%s)", got);
    got = s_try (client, "val", "greet", "{\"text\": \"much too long\"}");
    tap_ok (strncmp (got, "bad_request: $.text: ", 21) == 0,
            "a string over maxLength is bad_request at $.text (%s)", got);
    got = s_try (client, "val", "greet", NULL);
    tap_ok (strncmp (got, "bad_request: $: ", 16) == 0,
            "an empty body (nil) is checked too (%s)", got);
    tap_is_int (s_greets [0], 1, "the handler never ran for any of them");

    /*  A method without a request schema is not validated.  */
    got = s_try (client, "val", "free", "[1, {\"a\": null}]");
    tap_is_str (got, "[1,{\"a\":null}]", "a method without a schema takes any body");
    tap_is_int (s_frees [0], 1, "and its handler ran");

    /*  Reply checking (asked for on val): a non-conforming reply is internal.  */
    got = s_try (client, "val", "liar", NULL);
    tap_is_str (got, "internal: reply $.text: expected string, got integer",
                "with validate_replies a bad reply becomes internal with its path");
    got = s_try (client, "raw", "liar", NULL);
    tap_is_str (got, "{\"text\":5}", "without it the reply goes out as the handler made it");

    /*  The instance started without schemas validates nothing.  */
    got = s_try (client, "raw", "greet", "{\"text\": 5}");
    tap_is_str (got, "{\"text\":null}",
                "an instance without schemas passes the same body to its handler");
    tap_is_int (s_greets [1], 1, "whose handler ran");

    /*  Still serving after all the refusals.  */
    got = s_try (client, "val", "greet", "{\"text\": \"amy\"}");
    tap_is_str (got, "{\"text\":\"hello, amy\"}", "valid requests are still served after refusals");

    sb_client_destroy (&client);
    sb_instance_stop (&val);
    sb_instance_stop (&raw);
    sb_broker_destroy (&broker);
    sb_schema_set_destroy (&schemas);
    return tap_done ();
}
