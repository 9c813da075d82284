/*  internal.h — the runtime's private view of itself.

    libswitchboard is built in layers (docs/architecture.md section 2);
    each layer's header includes only the public header and the layers
    before it:

        wire/      header codec, names, framing, body decoding,
                   error codes, trace ids
        schema/    JSON <-> MessagePack, method schemas
        security/  keys, certificates, identities, sealed boxes, the
                   sealer (which asks the bus for keys through a narrow
                   lookup interface)
        bus/       links, the peer (calls, failover, subscriptions, the
                   sealer's lookups), beacons, discovery, clients
        host/      service instances (actors), plugins, service config

    The runtime's own source files include this header and nothing else of
    the runtime, but for the private header a class written in several
    files shares beside them (bus/peer_private.h).  Nothing outside
    runtime/ includes it: the broker, `sb` and the tests include the one
    layer header they use, and plugins see only include/switchboard.h
    (everything else is hidden from the shared library;
    tools/check-shape.py checks both).
*/
#ifndef SB_INTERNAL_H_INCLUDED
#define SB_INTERNAL_H_INCLUDED

#include "switchboard.h"

#include "wire/wire.h"
#include "wire/name.h"
#include "wire/frame.h"
#include "schema/path.h"
#include "schema/format.h"
#include "schema/schema.h"
#include "security/keys.h"
#include "security/cert.h"
#include "security/identity.h"
#include "security/seal.h"
#include "security/envelope.h"
#include "security/sealer.h"
#include "bus/link.h"
#include "bus/peer.h"
#include "bus/beacon.h"
#include "bus/discovery.h"
#include "bus/loop.h"
#include "host/config.h"
#include "host/plugin.h"
#include "host/instance.h"

#endif
