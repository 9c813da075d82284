/*  instance.h — running one instance of a service as an actor.

    `sb run` (and tests) start each instance of a loaded service with
    sb_instance_start: the instance gets its own thread, its own links to
    every broker in `endpoints`, runs the plugin's init() on that thread,
    then offers the service (READY with `capacity`) to each broker that
    welcomes it, again after every broker restart.  Requests are handled
    one at a time on that thread, so the handlers of one instance never
    run concurrently.  See actor.c.
*/
#ifndef SB_INSTANCE_H_INCLUDED
#define SB_INSTANCE_H_INCLUDED

#include "switchboard.h"

typedef struct sb_instance sb_instance_t;

/*  Requests one instance holds at once when capacity <= 0.  */
#define SB_INSTANCE_CAPACITY_DEFAULT 100

/*  Starts one actor for the service: its thread, its DEALER(s) to the
    comma-separated endpoints, runs init() on that thread, sends READY
    with `capacity`.  `service` and `config` are borrowed and must
    outlive the instance.  Returns NULL with err filled if the
    descriptor is invalid, an endpoint is bad or init() fails (its own
    error text is passed on); nothing is left running then.  */
sb_instance_t *sb_instance_start (const sb_service_t *service, int instance,
                                  const sb_config_t *config, const char *endpoints,
                                  int capacity, sb_error_t *err);

/*  Says BYE to the brokers, stops the thread after running fini() on it,
    frees everything and NULLs *self_p.  Safe on NULL and twice.  */
void sb_instance_stop (sb_instance_t **self_p);

#endif
