#   demo.zpl — the REST bridge of `./quickstart demo`.
#   Paths are relative to the source tree (quickstart runs there); the
#   demo overrides listen with --set when SB_DEMO_HTTP_PORT is given.
#   The bus links are secure: quickstart runs the bridge as member
#   'rest-bridge' of the demo keys (--keys BUILD/demo-keys).
#   No API keys: the bridge warns loudly that anyone reaching the port may
#   call every service.  Fine on loopback, never anywhere else.
rest-bridge
    listen = "127.0.0.1:8080"
    threads = 2
    schemas = "schemas"
