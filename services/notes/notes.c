/*  notes.c — the worked example of docs/writing-services.md: a service
    that owns its data (SQLite), publishes an event, and calls another
    service.  Its database is the config key `db` (default notes.db).

      notes.create {"title": S, "body": S?} -> {"id": N, "title": S}
                   and publishes notes.created {"id": N, "title": S}
      notes.get    {"id": N} -> {"id", "title", "body"}   (not_found)
      notes.list   {} -> [{"id", "title"}...]
      notes.delete {"id": N} -> {"deleted": true}          (not_found)
      notes.shout  {"id": N} -> {"id", "title"}: the title reversed by
                   echo.reverse, to show a call to another service

    get, list and delete block (SB_METHOD_BLOCKING): they run on the
    instance's worker thread while the instance serves the rest; create
    runs on the instance itself because it publishes, which only the
    instance may do.  The handle is opened serialized (FULLMUTEX), as
    both threads use it.
*/
#include <switchboard.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>

typedef struct { sqlite3 *db; } notes_t;

/*  Prepares sql and binds the integer arguments (n of them).  */
static sqlite3_stmt *
s_query (notes_t *self, const char *sql, int n, int64_t a, int64_t b)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2 (self->db, sql, -1, &st, NULL) != SQLITE_OK)
        return NULL;
    if (n > 0) sqlite3_bind_int64 (st, 1, a);
    if (n > 1) sqlite3_bind_int64 (st, 2, b);
    return st;
}

static int
s_create (sb_request_t *req, const msgpack_object *body, void *state)
{
    notes_t *self = state;
    char title [256], text [4096] = "";
    if (sb_request_unpack (req, "{s:s, s?:s}", "title", title, sizeof title, "body", text, sizeof text))
        return -1;
    sqlite3_stmt *st = s_query (self, "INSERT INTO notes (title, body) VALUES (?, ?)", 0, 0, 0);
    if (!st)
        return sb_request_error (req, SB_E_INTERNAL, "%s", sqlite3_errmsg (self->db));
    sqlite3_bind_text (st, 1, title, -1, SQLITE_STATIC);
    sqlite3_bind_text (st, 2, text, -1, SQLITE_STATIC);
    int rc = sqlite3_step (st);
    sqlite3_finalize (st);
    if (rc != SQLITE_DONE)
        return sb_request_error (req, SB_E_INTERNAL, "%s", sqlite3_errmsg (self->db));
    int64_t id = sqlite3_last_insert_rowid (self->db);
    sb_actor_publish_pack (sb_request_actor (req), "notes.created", "{s:I, s:s}", "id", id, "title", title);
    return sb_reply_pack (req, "{s:I, s:s}", "id", id, "title", title);
}

static int
s_get (sb_request_t *req, const msgpack_object *body, void *state)
{
    int64_t id;
    if (sb_request_unpack (req, "{s:I}", "id", &id))
        return -1;
    sqlite3_stmt *st = s_query (state, "SELECT title, body FROM notes WHERE id = ?", 1, id, 0);
    if (!st || sqlite3_step (st) != SQLITE_ROW) {
        sqlite3_finalize (st);
        return sb_request_error (req, SB_E_NOT_FOUND, "no note %lld", (long long) id);
    }
    int rc = sb_reply_pack (req, "{s:I, s:s, s:s}", "id", id, "title", sqlite3_column_text (st, 0),
                            "body", sqlite3_column_text (st, 1));
    sqlite3_finalize (st);
    return rc;
}

static int
s_list (sb_request_t *req, const msgpack_object *body, void *state)
{
    sqlite3_stmt *count = s_query (state, "SELECT MIN(COUNT(*), 1000) FROM notes", 0, 0, 0);
    sqlite3_stmt *st = s_query (state, "SELECT id, title FROM notes ORDER BY id LIMIT 1000", 0, 0, 0);
    msgpack_packer *pk = sb_reply_begin (req);
    msgpack_pack_array (pk, count && sqlite3_step (count) == SQLITE_ROW ? sqlite3_column_int (count, 0) : 0);
    while (st && sqlite3_step (st) == SQLITE_ROW)
        sb_pack (pk, NULL, "{s:I, s:s}", "id", (int64_t) sqlite3_column_int64 (st, 0),
                 "title", sqlite3_column_text (st, 1));
    sqlite3_finalize (count);
    sqlite3_finalize (st);
    return sb_reply_send (req);
}

static int
s_delete (sb_request_t *req, const msgpack_object *body, void *state)
{
    int64_t id;
    if (sb_request_unpack (req, "{s:I}", "id", &id))
        return -1;
    sqlite3_stmt *st = s_query (state, "DELETE FROM notes WHERE id = ?", 1, id, 0);
    int rc = st ? sqlite3_step (st) : SQLITE_ERROR;
    sqlite3_finalize (st);
    if (rc != SQLITE_DONE || sqlite3_changes (((notes_t *) state)->db) == 0)
        return sb_request_error (req, SB_E_NOT_FOUND, "no note %lld", (long long) id);
    return sb_reply_pack (req, "{s:b}", "deleted", 1);
}

static int
s_reversed (sb_request_t *req, const msgpack_object *reply, const sb_error_t *err, void *arg)
{
    if (err)
        return sb_request_error (req, err->code, "echo.reverse: %s", err->text);
    const char *text;
    size_t len;
    if (sb_unpack (reply, NULL, "{s:S}", "text", &text, &len))
        return -1;
    return sb_reply_pack (req, "{s:I, s:S}", "id", (int64_t) (intptr_t) arg, "title", text, len);
}

static int
s_shout (sb_request_t *req, const msgpack_object *body, void *state)
{
    /*  Reads the title on the actor (a short query), then calls echo.  */
    int64_t id;
    if (sb_request_unpack (req, "{s:I}", "id", &id))
        return -1;
    sqlite3_stmt *st = s_query (state, "SELECT title FROM notes WHERE id = ?", 1, id, 0);
    if (!st || sqlite3_step (st) != SQLITE_ROW) {
        sqlite3_finalize (st);
        return sb_request_error (req, SB_E_NOT_FOUND, "no note %lld", (long long) id);
    }
    int rc = sb_request_call (req, "echo", "reverse", NULL, s_reversed, (void *) (intptr_t) id, "{s:s}", "text",
                              (const char *) sqlite3_column_text (st, 0));
    sqlite3_finalize (st);
    return rc;
}

static int
s_init (sb_actor_t *actor, const sb_config_t *config, void **state, sb_error_t *err)
{
    static notes_t self;
    const char *path = sb_config_get_default (config, "db", "notes.db");
    if (sqlite3_open_v2 (path, &self.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                         | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK
    ||  sqlite3_exec (self.db, "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, "
                      "title TEXT NOT NULL, body TEXT NOT NULL)", NULL, NULL, NULL) != SQLITE_OK) {
        sb_error_set (err, SB_E_INTERNAL, "notes: cannot open %s: %s", path, sqlite3_errmsg (self.db));
        sqlite3_close (self.db);
        return -1;
    }
    *state = &self;
    return 0;
}

static void
s_fini (void *state)
{
    sqlite3_close (((notes_t *) state)->db);
}

static const sb_method_t methods [] = {
    { "create", s_create, 0 }, { "get", s_get, SB_METHOD_IDEMPOTENT | SB_METHOD_BLOCKING },
    { "list", s_list, SB_METHOD_IDEMPOTENT | SB_METHOD_BLOCKING }, { "delete", s_delete, SB_METHOD_BLOCKING },
    { "shout", s_shout, SB_METHOD_IDEMPOTENT }, { NULL, NULL, 0 }
};

SB_SERVICE = { .abi_version = SB_ABI_VERSION, .name = "notes", .version = "1.0.0",
               .methods = methods, .init = s_init, .fini = s_fini };
