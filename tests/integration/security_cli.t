#!/bin/bash
# security_cli.t — `sb keygen`, `sb cert sign` and `sb cert show` as an
# operator runs them (docs/security.md, section 6): file modes, never
# overwriting a key, refusing a secret others may read, verification against
# the authority (another authority's certificate, an altered one, an expired
# one), and the documented exit codes (0 ok, 1 failure, 2 usage).
. "$(dirname "$0")/lib.sh"

K="$SB_TMP/keys"

run () {
    OUT=$("$SB" "$@" 2> "$SB_TMP/err")
    RC=$?
    ERR=$(cat "$SB_TMP/err")
}

mode () {
    stat -c %a "$1"
}

# -- keygen ---------------------------------------------------------------

run keygen authority "$K"
is "$RC" 0 "keygen authority exits 0"
is "$(mode "$K")" 700 "the keys directory is created 0700"
is "$(mode "$K/authority.key")" 600 "authority.key is 0600"
is "$(mode "$K/authority.pub")" 644 "authority.pub is 0644"
like "$OUT" '[0-9a-f]{32}' "keygen prints the key id"

run keygen member alice "$K"
is "$RC" 0 "keygen member exits 0"
is "$(mode "$K/alice.key")" 600 "alice.key is 0600"
is "$(mode "$K/alice.pub")" 644 "alice.pub is 0644"
grep -q 'curve-secret' "$K/alice.pub"
is $? 1 "the public file holds no secret"

BEFORE=$(sha256sum "$K/alice.key")
run keygen member alice "$K"
is "$RC" 1 "keygen refuses to overwrite an existing member (exit 1)"
like "$ERR" 'already exists' "and says the file exists"
is "$(sha256sum "$K/alice.key")" "$BEFORE" "alice.key is untouched"
run keygen authority "$K"
is "$RC" 1 "keygen refuses to overwrite the authority"

run keygen member 'bad/name' "$K"
is "$RC" 2 "an invalid member name is a usage error (exit 2)"
run keygen
is "$RC" 2 "no arguments is a usage error"
run keygen --help
is "$RC" 0 "--help exits 0"
like "$OUT" '^usage: sb keygen' "and prints usage on stdout"

# -- cert sign / show ---------------------------------------------------

run cert sign --authority "$K/authority.key" --member "$K/alice.pub" \
    --offer echo --call 'sys,echo.*' --days 30 --out "$K/alice.cert"
is "$RC" 0 "cert sign exits 0"
is "$(mode "$K/alice.cert")" 644 "the certificate is 0644"
run cert show --authority-pub "$K/authority.pub" "$K/alice.cert"
is "$RC" 0 "cert show with the authority verifies it (exit 0)"
like "$OUT" 'name: +alice' "shows the name"
like "$OUT" 'offer: +echo' "shows the offer list"
like "$OUT" 'call: +sys, echo\.\*' "shows the call list"
like "$OUT" 'verified: +ok' "says it is valid"
run cert show "$K/alice.cert"
is "$RC" 0 "cert show without the authority exits 0"
like "$OUT" 'verified: +not checked' "and says it did not verify"

BEFORE=$(sha256sum "$K/alice.cert")
run cert sign --authority "$K/authority.key" --member "$K/alice.pub" --out "$K/alice.cert"
is "$RC" 1 "cert sign refuses to overwrite a certificate"
is "$(sha256sum "$K/alice.cert")" "$BEFORE" "the certificate is untouched"

run cert sign --authority "$K/alice.key" --member "$K/alice.pub" --out "$K/x.cert"
is "$RC" 1 "a member key cannot sign certificates"
like "$ERR" 'not an authority' "and says so"
run cert sign --authority "$K/authority.key" --member "$K/alice.pub" --offer 'bad pattern' --out "$K/x.cert"
is "$RC" 2 "an invalid pattern is a usage error"
[ ! -e "$K/x.cert" ]
ok $? "and nothing is written"
run cert sign --authority "$K/authority.key" --member "$K/alice.pub" --days 0 --out "$K/x.cert"
is "$RC" 2 "--days 0 is a usage error"
run cert sign --authority "$K/authority.key" --member "$K/alice.pub" --days 2 --seconds 5 --out "$K/x.cert"
is "$RC" 2 "--days and --seconds together are a usage error"
run cert frobnicate
is "$RC" 2 "an unknown action is a usage error"

# A secret others may read is refused, with the fix.
chmod 640 "$K/authority.key"
run cert sign --authority "$K/authority.key" --member "$K/alice.pub" --out "$K/x.cert"
is "$RC" 1 "a group-readable authority key is refused"
like "$ERR" 'too open.*chmod 600' "the error says how to fix it"
chmod 600 "$K/authority.key"

# Another authority's certificate.
O="$SB_TMP/other"
run keygen authority "$O"
run cert sign --authority "$O/authority.key" --member "$K/alice.pub" --out "$O/alice.cert"
is "$RC" 0 "another authority signs a certificate for alice"
run cert show --authority-pub "$K/authority.pub" "$O/alice.cert"
is "$RC" 1 "show --authority-pub refuses it (exit 1)"
like "$OUT" 'verified: +INVALID \(wrong_authority\)' "as wrong_authority"
like "$ERR" 'another authority' "with a one-line reason"
is "$(printf '%s\n' "$ERR" | wc -l)" 1 "errors are one line"

# An altered certificate (one base64 character changed in the signed part).
python3 - "$K/alice.cert" "$SB_TMP/altered.cert" <<'EOF'
import base64, sys
lines = open(sys.argv[1]).read().splitlines()
out = []
for line in lines:
    if line.startswith("cert = "):
        raw = bytearray(base64.b64decode(line[7:]))
        raw[-1] ^= 1                      # last byte of the signature
        line = "cert = " + base64.b64encode(bytes(raw)).decode()
    out.append(line)
open(sys.argv[2], "w").write("\n".join(out) + "\n")
EOF
run cert show --authority-pub "$K/authority.pub" "$SB_TMP/altered.cert"
is "$RC" 1 "an altered certificate is refused"
like "$OUT" 'INVALID \(bad_signature\)' "as bad_signature"

# An expired certificate.
run keygen member shortlived "$K"
run cert sign --authority "$K/authority.key" --member "$K/shortlived.pub" --seconds 1 --out "$K/shortlived.cert"
is "$RC" 0 "a one-second certificate is issued"
sleep 2
run cert show --authority-pub "$K/authority.pub" "$K/shortlived.cert"
is "$RC" 1 "once expired, show exits 1"
like "$OUT" 'verified: +INVALID \(expired\)' "and shows it as expired"
like "$ERR" 'expired' "the error says expired"

run cert show --authority-pub "$K/authority.pub" "$SB_TMP/nonexistent.cert"
is "$RC" 1 "a missing certificate file exits 1"
like "$ERR" 'nonexistent.cert' "naming the file"
run cert show --authority-pub "$K/alice.pub" "$K/alice.cert"
is "$RC" 1 "a member key given as the authority is refused"

done_testing
