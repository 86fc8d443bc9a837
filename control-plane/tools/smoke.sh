#!/bin/sh
# Smoke test of torrix-cp (test aid): ./smoke.sh BUILD_DIR [PORT]
# Needs BUILD_DIR/torrix-cp and BUILD_DIR/txcp_tool (see txcp_tool.c).
set -u
BD=$(cd "$1" && pwd); PORT=${2:-18189}
D=$(mktemp -d /tmp/txcp-smoke.XXXXXX)
CP="$BD/torrix-cp"; T="$BD/txcp_tool"; B=http://127.0.0.1:$PORT/api/v1
fail=0
"$CP" --data "$D/data" --listen 127.0.0.1:$PORT --foreground \
    >"$D/out.log" 2>"$D/err.log" &
PID=$!
sleep 1
A=$(cat "$D/data/admin.key"); H="Authorization: Bearer $A"
j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
req() { curl -s -w '\n%{http_code}' -H "$H" "$@"; }
expect() {   # expect CODE curl-args...
    code=$1; shift
    out=$(req "$@"); got=$(printf '%s\n' "$out" | tail -1)
    if [ "$got" != "$code" ]; then
        echo "FAIL want $code got $got: $* -> $(printf '%s\n' "$out" | head -1)" >&2
        fail=1
    fi
    printf '%s\n' "$out" | head -1
}
ORG=$(expect 201 -d '{"name":"Acme","spend_cap_usd":10}' $B/orgs | j 'd["id"]')
PRJ=$(expect 201 -d "{\"slug\":\"app-1\",\"org_id\":\"$ORG\"}" $B/projects | j 'd["id"]')
USR=$(expect 201 -d "{\"email\":\"u@x.io\",\"org_id\":\"$ORG\"}" $B/users | j 'd["id"]')
expect 409 -d '{"slug":"app-1"}' $B/projects >/dev/null
expect 400 -d '{"slug":"Bad Slug"}' $B/projects >/dev/null
expect 400 -d '{"slug":"ok","nope":1}' $B/projects >/dev/null
K=$(expect 201 -d "{\"name\":\"ci\",\"project_id\":\"$PRJ\",\"user_id\":\"$USR\",\"allowed_models\":[\"gpt-4o*\"],\"monthly_budget_usd\":12.5}" $B/keys)
KID=$(echo "$K" | j 'd["id"]'); S1=$(echo "$K" | j 'd["key"]')
[ "$(echo "$K" | j 'd["org_id"]')" = "$ORG" ] || { echo "FAIL org default"; fail=1; }
[ "$("$T" lookup "$D/data/snapshot" "$S1" | cut -d' ' -f1)" = "$KID" ] || { echo "FAIL lookup"; fail=1; }
expect 200 -X PATCH -d '{"rpm":5,"expires_at":1999999999,"metadata":{"a":"b"}}' $B/keys/$KID >/dev/null
expect 400 -X PATCH -d '{"soft_alert_pct":101}' $B/keys/$KID >/dev/null
expect 400 -X PATCH -d '{"daily_cap_usd":-0.01}' $B/keys/$KID >/dev/null
expect 400 -X PATCH -d '{"user_id":"usr_nope"}' $B/keys/$KID >/dev/null
expect 400 -X PATCH -d '{"rpm":1' $B/keys/$KID >/dev/null
expect 404 -X PATCH -d '{"rpm":1}' $B/keys/key_nope >/dev/null
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer x" $B/keys)" = 401 ] || { echo "FAIL 401"; fail=1; }
S2=$(expect 200 -X POST -d '{"grace_seconds":100}' $B/keys/$KID/rotate | j 'd["key"]')
[ "$("$T" lookup "$D/data/snapshot" "$S1" | cut -d' ' -f1)" = "$KID" ] || { echo "FAIL grace"; fail=1; }
[ "$("$T" lookup "$D/data/snapshot" "$S2" | cut -d' ' -f1)" = "$KID" ] || { echo "FAIL new"; fail=1; }
expect 200 -X DELETE $B/keys/$KID | j 'd["status"]'
expect 200 -X DELETE $B/keys/$KID >/dev/null
expect 409 -X POST $B/keys/$KID/rotate >/dev/null
"$T" lookup "$D/data/snapshot" "$S2" >/dev/null && { echo "FAIL revoked still in khash"; fail=1; }
expect 409 -X DELETE $B/orgs/$ORG >/dev/null
expect 200 -X DELETE $B/projects/$PRJ >/dev/null
expect 200 -X PUT -d '{"api_key":"sk-xyz"}' $B/providers/openai >/dev/null
expect 200 -X PATCH -d '{"sample_rate":0.5}' $B/settings >/dev/null
# issue 3: pricing, enrichment, rollups, spend, runs filters, exports
F=/work/shared/data/model_prices_and_context_window.json
[ -f "$F" ] || F=$(dirname "$0")/../../../shared/data/model_prices_and_context_window.json
[ "$(expect 200 $B/pricing/gpt-4o | j 'd["source"], d["input_per_mtok_usd"]')" = "default 2.5" ] || { echo "FAIL default price"; fail=1; }
if [ -f "$F" ]; then
    [ "$(expect 200 --data-binary @"$F" $B/pricing/import | j 'd["imported"] > 100 and d["errors"] == []')" = True ] || { echo "FAIL import"; fail=1; }
    [ "$(expect 200 $B/pricing/gpt-4o | j 'd["source"]')" = catalog ] || { echo "FAIL catalog layer"; fail=1; }
    "$CP" pricing import "$F" --data "$D/data" >/dev/null || { echo "FAIL cli import"; fail=1; }
fi
expect 200 -X PUT -d '{"input_per_mtok_usd":1,"output_per_mtok_usd":2}' $B/pricing/my-model >/dev/null
expect 400 -X PUT -d '{"input_per_mtok_usd":1}' $B/pricing/my-model >/dev/null
[ "$(expect 200 "$B/pricing?q=my-mod" | j 'd["data"][0]["source"]')" = custom ] || { echo "FAIL custom"; fail=1; }
expect 200 -X DELETE $B/pricing/my-model >/dev/null
expect 404 -X DELETE $B/pricing/my-model >/dev/null
[ "$(expect 200 $B/pricing/ollama/llama3 | j 'd["free"]')" = True ] || { echo "FAIL ollama free"; fail=1; }
"$T" snapdump "$D/data/snapshot" | grep -q "^  gpt-4o-mini =" || { echo "FAIL prices not in snapshot"; fail=1; }
expect 200 -X PATCH -d '{"retention_days":30,"default_max_tokens":4096,"pii_rules":{"employee":"E[0-9]{6}"}}' $B/settings >/dev/null
expect 400 -X PATCH -d '{"pii_rules":{"bad":"(["}}' $B/settings >/dev/null
PRJ2=$(expect 201 -d "{\"slug\":\"app-2\",\"org_id\":\"$ORG\",\"pii_masking\":true}" $B/projects | j 'd["id"]')
K2=$(expect 201 -d "{\"name\":\"m\",\"project_id\":\"$PRJ2\",\"user_id\":\"$USR\",\"metadata\":{\"team\":\"meta\",\"cc\":\"7\"}}" $B/keys | j 'd["id"]')
"$T" spool "$D/data/spool" 30 seal 0 "$K2" "$PRJ2" "$USR" "$ORG" >/dev/null
sleep 0.5
[ "$(expect 200 "$B/runs?key_id=$K2&limit=1000" | j 'len(d["data"])')" = 30 ] || { echo "FAIL runs by key"; fail=1; }
[ "$(expect 200 "$B/runs?key_id=$K2&status=error" | j 'len(d["data"])')" = 3 ] || { echo "FAIL runs errors"; fail=1; }
[ "$(expect 200 "$B/runs?project_id=$PRJ2&tag=cc=7&limit=1" | j 'd["data"][0]["tags"]')" = "{'team': 'a', 'env': 'ci', 'agent': 'bot', 'cc': '7'}" ] || { echo "FAIL merged tags"; fail=1; }
R2=$(expect 200 "$B/runs?key_id=$K2&limit=1" | j 'd["data"][0]["id"]')
[ "$(expect 200 $B/runs/$R2 | j '"[EMAIL_1]" in d["request_body"] and "ann@" not in d["response_body"]')" = True ] || { echo "FAIL pii"; fail=1; }
[ "$(expect 200 "$B/spend/scopes?scope=key&id=$K2" | j 'd["day"]["cost_usd"], d["ingest_watermark"] is not None')" = "0.00037935 True" ] || { echo "FAIL spend scope"; fail=1; }
[ "$(expect 200 "$B/spend?by=key" | j '[x["requests"] for x in d["data"] if x["id"]=="'$K2'"][0], len(d["data"][0]["series"])')" = "30 30" ] || { echo "FAIL spend by key"; fail=1; }
expect 200 "$B/spend?by=tag" >/dev/null
expect 400 "$B/spend?by=nope" >/dev/null
[ "$(expect 200 $B/usage/users | j 'd["data"][0]["requests"]')" = 30 ] || { echo "FAIL usage users"; fail=1; }
[ "$(expect 200 "$B/errors?key_id=$K2" | j 'len(d["data"]), d["data"][0]["source"], d["data"][0]["agent"]')" = "3 provider bot" ] || { echo "FAIL errors"; fail=1; }
expect 200 "$B/logs?user_id=$USR&limit=5" >/dev/null
[ "$(curl -s -H "$H" $B/users/$USR/activity.csv | python3 -c 'import csv,sys; r=list(csv.reader(sys.stdin)); print(len(r), r[0][0], "[EMAIL_1]" in r[1][8])')" = "31 time True" ] || { echo "FAIL csv"; fail=1; }
expect 404 $B/users/usr_nope/activity.csv >/dev/null
"$T" spool "$D/data/spool" 50 seal >/dev/null
"$T" spool "$D/data/spool" 20 torn >/dev/null
sleep 0.5
expect 200 $B/health
expect 200 "$B/runs?limit=2" | j 'len(d["data"]), d["next_cursor"] is not None'
RID=$(req "$B/runs?limit=1" | head -1 | j 'd["data"][0]["id"]')
expect 200 $B/runs/$RID | j '"request_body" in d'
expect 200 $B/audit/verify
"$CP" audit verify --data "$D/data" || fail=1
TORRIX_TEST=1 "$CP" audit tamper --data "$D/data" --seq 3 >/dev/null
"$CP" audit verify --data "$D/data" && { echo "FAIL tamper undetected"; fail=1; }
expect 200 $B/audit/verify
# issue 4: limits fields, webhooks, alerts (a local receiver records bodies)
RP=$((PORT + 1))
cat > "$D/recv.py" <<'PY'
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        b = self.rfile.read(int(self.headers.get('content-length', 0)))
        with open(sys.argv[2], 'a') as f:
            f.write(json.dumps({"path": self.path, "body": b.decode(),
                                "sig": self.headers.get('x-torrix-signature')}) + "\n")
        self.send_response(200); self.send_header('content-length', '0'); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
PY
python3 "$D/recv.py" $RP "$D/hooks.jsonl" & RPID=$!
[ "$(expect 200 -X PATCH -d '{"rpm":60,"tpm":1000,"soft_alert_pct":90}' $B/orgs/$ORG | j 'd["rpm"], d["tpm"], d["soft_alert_pct"]')" = "60 1000 90" ] || { echo "FAIL org limits"; fail=1; }
[ "$(expect 200 -X PATCH -d '{"instance_daily_cap_usd":500,"instance_soft_alert_usd":400}' $B/settings | j 'd["instance_daily_cap_usd"], d["instance_soft_alert_usd"]')" = "500.0 400.0" ] || { echo "FAIL instance caps"; fail=1; }
"$T" snapdump "$D/data/snapshot" | grep -q "instance_daily_cap = 50000000000" || { echo "FAIL instance cap not published"; fail=1; }
expect 400 -d '{"url":"ftp://x"}' $B/webhooks >/dev/null
expect 400 -d '{"url":"http://127.0.0.1:1/","events":["nope"]}' $B/webhooks >/dev/null
WH=$(expect 201 -d "{\"url\":\"http://127.0.0.1:$RP/h\",\"secret\":\"whsec-123\"}" $B/webhooks | j 'd["id"]')
WS=$(expect 201 -d "{\"url\":\"http://127.0.0.1:$RP/s\",\"format\":\"slack\",\"events\":[\"budget_exceeded\"]}" $B/webhooks | j 'd["id"]')
[ "$(expect 200 $B/webhooks/$WH | j '"secret" in d, d["secret_set"]')" = "False True" ] || { echo "FAIL secret shown"; fail=1; }
expect 200 -X PATCH -d '{"name":"ops"}' $B/webhooks/$WH >/dev/null
K3=$(expect 201 -d "{\"name\":\"capped\",\"user_id\":\"$USR\",\"daily_cap_usd\":0.0001}" $B/keys | j 'd["id"]')
"$T" spool "$D/data/spool" 10 seal 0 "$K3" >/dev/null
for i in 1 2 3 4 5 6 7 8 9 10; do   # ingest, then delivery: wait up to 5 s
    [ "$(req "$B/alerts?scope=key&scope_id=$K3" | head -1 | j 'sum(x["status"] == "delivered" for a in d["data"] for x in a["deliveries"])')" = 3 ] && break
    sleep 0.5
done
[ "$(expect 200 "$B/alerts?scope=key&scope_id=$K3" | j '[(a["level"], a["period"], [x["status"] for x in a["deliveries"]]) for a in d["data"]]')" = "[('hard', 'daily', ['delivered', 'delivered']), ('soft', 'daily', ['delivered'])]" ] || { echo "FAIL alerts"; fail=1; }
"$T" spool "$D/data/spool" 10 seal 0 "$K3" >/dev/null
sleep 0.5
[ "$(expect 200 "$B/alerts?scope=key&scope_id=$K3" | j 'len(d["data"])')" = 2 ] || { echo "FAIL alert repeated"; fail=1; }
python3 - "$D/hooks.jsonl" "$K3" <<'PY' || { echo "FAIL webhook bodies"; fail=1; }
import json, sys, hmac, hashlib
rows = [json.loads(l) for l in open(sys.argv[1])]
mine = [r for r in rows if r["path"] == "/h" and json.loads(r["body"])["scope_id"] == sys.argv[2]]
assert sorted(json.loads(r["body"])["event"] for r in mine) == ["budget_exceeded", "budget_threshold"], mine
for r in mine:
    assert r["sig"] == "sha256=" + hmac.new(b"whsec-123", r["body"].encode(), hashlib.sha256).hexdigest()
    b = json.loads(r["body"]); assert b["scope"] == "key" and b["period"] == "daily" and b["alert_id"].startswith("alr_")
slack = [json.loads(r["body"]) for r in rows if r["path"] == "/s"]
assert slack and all("text" in b and b["blocks"][0]["text"]["type"] == "mrkdwn" for b in slack)
PY
[ "$(expect 200 "$B/audit?limit=10" | j '[a["diff"]["secret"][1] for a in d["data"] if a["target_type"]=="webhook" and "secret" in a["diff"]]')" = "['[redacted]']" ] || { echo "FAIL webhook audit"; fail=1; }
expect 200 -X DELETE $B/webhooks/$WS >/dev/null
expect 404 $B/webhooks/$WS >/dev/null
kill $RPID
head -c 1100000 /dev/zero | tr '\0' a > "$D/big"
expect 413 --data-binary @"$D/big" $B/keys >/dev/null
kill -TERM $PID; wait $PID; rc=$?
[ $rc = 0 ] || { echo "FAIL exit $rc"; fail=1; }
if grep -q "$A\|$S1\|$S2\|sk-xyz\|whsec-123" "$D/err.log"; then echo "FAIL secret logged"; fail=1; fi
if grep -qi "ERROR: AddressSanitizer\|runtime error" "$D/err.log"; then
    echo "FAIL sanitizer"; grep -A20 "Sanitizer\|runtime error" "$D/err.log"; fail=1
fi
echo "smoke: $([ $fail = 0 ] && echo PASS || echo FAIL) (logs in $D)"
exit $fail
