"""Spend and usage APIs (issue 3): rollups by model, key, provider, user,
tag agree with the runs they were built from; per-user usage; gateway logs;
error reports; a user's activity as streamed CSV."""

import csv
import io
import json

from torrix import money, run_tokens, wait_until

OPENAI_USAGE = {"prompt_tokens": 1000, "completion_tokens": 300,
                "total_tokens": 1300,
                "prompt_tokens_details": {"cached_tokens": 400}}
TRICKY = 'he said, "hi, there"\nsecond line; 100% sure\r\nthird'


def traffic(stack):
    """Runs across 2 users (one key each), 2 models, one upstream 500 and
    one end user; returns (users, keys, run ids, the 500 run id)."""
    users = [stack.api.create("users", email="u%d@example.com" % i,
                              name="User %d" % i) for i in (1, 2)]
    keys = [stack.api.create_key(user_id=u["id"]) for u in users]
    hdr = {"x-mock-usage": json.dumps(OPENAI_USAGE)}
    ids = []

    def send(key, model, **kw):
        r = stack.chat(key["key"], model, **kw)
        ids.append(r.headers["x-torrix-run-id"])
        return r
    send(keys[0], "gpt-4o-mini", headers=hdr)
    send(keys[0], "gpt-4o-mini",
         extra={"messages": [{"role": "user", "content": TRICKY}]})
    send(keys[0], "gpt-4o", headers=dict(hdr, **{"x-torrix-user": "eu-1"}))
    send(keys[1], "gpt-4o", headers=hdr)
    send(keys[1], "gpt-4o", extra={"stream": True}, headers=hdr)
    r = send(keys[1], "gpt-4o-mini", headers={
        "x-mock-status": "500", "x-torrix-tags": "agent=cli,version=1.2"})
    assert r.status_code == 500
    return users, keys, ids, ids[-1]


def all_runs(stack, ids):
    runs = {i: stack.run(i) for i in ids}
    return list(runs.values())


def spend(stack, by, **q):
    qs = "".join("&%s=%s" % kv for kv in q.items())
    return stack.api.ok("GET", "/spend?by=%s%s" % (by, qs))


def expected_groups(runs, keyf):
    g = {}
    for run in runs:
        for k in keyf(run):
            e = g.setdefault(k, {"cost": 0, "requests": 0, "errors": 0,
                                 "in": 0, "out": 0})
            e["cost"] += money(run["cost_usd"])
            e["requests"] += 1
            e["errors"] += 1 if run["flags"]["error"] else 0
            e["in"] += run_tokens(run)["input"]
            e["out"] += run_tokens(run)["output"]
    return g


def check_spend(stack, by, want):
    """GET /spend?by= has exactly these ids with these sums; the total is
    their sum; series are 30 days ending today."""
    def settled():
        j = spend(stack, by)
        got = {d["id"]: d for d in j["data"]}
        if set(got) != set(want) or any(
                got[i]["requests"] != want[i]["requests"] for i in want):
            return None
        return j
    j = wait_until(settled, 5, 0.05, "spend by %s" % by)[0]
    got = {d["id"]: d for d in j["data"]}
    for i, w in want.items():
        d = got[i]
        assert money(d["cost_usd"]) == w["cost"], (by, i, d, w)
        assert d["errors"] == w["errors"], (by, i, d)
        assert d["tokens_in"] == w["in"] and d["tokens_out"] == w["out"], d
        assert abs(d["mean_tokens_in"] - w["in"] / w["requests"]) < 1e-9, d
        assert len(d["series"]) == 30, d
        # every run is from today: the last day has it all
        assert money(d["series"][-1]) == w["cost"], (by, i, d["series"])
        assert all(x == 0 for x in d["series"][:-1]), d["series"]
    # cost-sorted, highest first
    costs = [d["cost_usd"] for d in j["data"]]
    assert costs == sorted(costs, reverse=True), costs
    t = j["total"]
    assert money(t["cost_usd"]) == sum(w["cost"] for w in want.values()), \
        (by, t)
    assert len(t["series"]) == 30
    return j


def test_spend_breakdowns(stack):
    users, keys, ids, _ = traffic(stack)
    runs = all_runs(stack, ids)
    total = sum(money(r["cost_usd"]) for r in runs)
    assert total > 0
    check_spend(stack, "model", expected_groups(runs, lambda r: [r["model"]]))
    check_spend(stack, "key", expected_groups(runs, lambda r: [r["key_id"]]))
    check_spend(stack, "provider", expected_groups(runs, lambda r: ["openai"]))
    byu = {k["id"]: u["id"] for k, u in zip(keys, users)}
    check_spend(stack, "user", expected_groups(
        runs, lambda r: [byu[r["key_id"]]]))
    j = spend(stack, "model")
    assert money(j["total"]["cost_usd"]) == total
    assert j["total"]["requests"] == len(runs)
    # a window in the past has nothing
    j = spend(stack, "model", since="2020-01-01T00:00:00Z",
              until="2020-01-31T00:00:00Z")
    assert j["data"] == [] and j["total"]["requests"] == 0, j
    r = stack.api.get("/spend?by=nonsense")
    assert r.status_code == 400, r.text


def test_usage_per_user(stack):
    users, keys, ids, _ = traffic(stack)
    runs = all_runs(stack, ids)
    byu = {k["id"]: u["id"] for k, u in zip(keys, users)}
    want = {}
    for r in runs:
        w = want.setdefault(byu[r["key_id"]], [0, 0, 0, 0])
        w[0] += 1
        w[1] += run_tokens(r)["input"]
        w[2] += run_tokens(r)["output"]
        w[3] += money(r["cost_usd"])

    def got():
        d = {u["user_id"]: u for u in
             stack.api.list_all("/usage/users")}
        ok = all(u in d and d[u]["requests"] == w[0]
                 for u, w in want.items())
        return d if ok else None
    d = wait_until(got, 5, 0.05, "usage per user")[0]
    for u, w in want.items():
        e = d[u]
        assert [e["requests"], e["input_tokens"], e["output_tokens"],
                money(e["cost_usd"])] == w, (e, w)
    assert d[users[0]["id"]]["email"] == "u1@example.com"


def test_logs_and_errors(stack):
    users, keys, ids, err_id = traffic(stack)
    runs = {r["id"]: r for r in all_runs(stack, ids)}
    logs = wait_until(lambda: (lambda d: d if len(d) >= len(ids) else None)(
        stack.api.list_all("/logs")), 5, 0.05, "logs")[0]
    assert [x["run_id"] for x in logs] == ids[::-1]     # newest first
    for x in logs:
        run = runs[x["run_id"]]
        assert x["key_id"] == run["key_id"]
        assert x["model_requested"] == run["model_requested"]
        assert x["model"] == run["model"]
        assert x["endpoint"] == "chat.completions"
        assert x["tokens"] == run_tokens(run), (x, run)
        assert money(x["cost_usd"]) == money(run["cost_usd"])
        assert x["status"] == run["status"]
    eu = [x for x in logs if x["end_user"] == "eu-1"]
    assert len(eu) == 1 and eu[0]["model"] == "gpt-4o"

    errs = stack.api.list_all("/errors")
    assert [e["run_id"] for e in errs] == [err_id], errs
    e = errs[0]
    assert e["source"] == "provider" and e["status"] == 500, e
    assert e["model"] == "gpt-4o-mini" and e["key_id"] == keys[1]["id"]
    assert e["user_id"] == users[1]["id"], e
    assert e["agent"] == "cli" and e["version"] == "1.2", e
    # a gateway refusal is an error report of source gateway, with its type
    k = stack.api.create_key(allowed_models=["gpt-4o"])
    r = stack.chat(k["key"], "gpt-3.5-turbo")
    assert r.status_code == 403
    gw = wait_until(lambda: [x for x in stack.api.list_all("/errors")
                             if x["run_id"] == r.headers["x-torrix-run-id"]],
                    5, 0.05, "gateway error")[0][0]
    assert gw["source"] == "gateway" and gw["status"] == 403, gw
    assert gw["type"] == r.json()["error"]["code"] or gw["type"] == \
        r.json()["error"]["type"], (gw, r.text)
    assert gw["error"], gw
    # the provider said what went wrong: the report says it too
    assert e["type"] == "server_error", e
    assert e["error"] and "mock error 500" in e["error"], e


def test_activity_csv(stack):
    users, keys, ids, _ = traffic(stack)
    runs = {r["id"]: r for r in all_runs(stack, ids)}
    mine = [i for i in ids if runs[i]["key_id"] == keys[0]["id"]]
    r = stack.api.get("/users/%s/activity.csv" % users[0]["id"],
                      stream=True)
    with r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv"), r.headers
        # streamed: not one buffer with a length
        assert "chunked" in r.headers.get("transfer-encoding", ""), r.headers
        text = r.content.decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header, body = rows[0], rows[1:]
    for col in ("time", "run_id", "model", "tokens_in", "tokens_out",
                "cost_usd", "latency_ms", "conversation"):
        assert col in header, header
    assert len(body) == len(mine), rows
    col = {c: i for i, c in enumerate(header)}
    assert sorted(row[col["run_id"]] for row in body) == sorted(mine)
    for row in body:
        assert len(row) == len(header), row
        run = runs[row[col["run_id"]]]
        assert row[col["model"]] == run["model"]
        assert int(row[col["tokens_in"]]) == run_tokens(run)["input"]
        assert int(row[col["tokens_out"]]) == run_tokens(run)["output"]
        assert abs(float(row[col["cost_usd"]]) - run["cost_usd"]) < 1e-12
        assert row[col["conversation"]] == run["request_body"]
    # the prompt with a comma, quotes and newlines came back intact
    tricky = [row for row in body
              if TRICKY in json.loads(row[col["conversation"]])
              ["messages"][0]["content"]]
    assert len(tricky) == 1, body
    # another user's file has only their runs; an unknown user is a 404
    r = stack.api.get("/users/%s/activity.csv" % users[1]["id"])
    other = list(csv.reader(io.StringIO(r.text, newline="")))[1:]
    assert len(other) == len(ids) - len(mine)
    r = stack.api.get("/users/usr_aaaaaaaaaaaaaaaaaaaa/activity.csv")
    assert r.status_code == 404, r.text


def test_runs_filters(stack):
    users, keys, ids, err_id = traffic(stack)
    runs = {r["id"]: r for r in all_runs(stack, ids)}
    named = stack.chat(keys[0]["key"], headers={"x-torrix-name": "eval-7"})
    named_id = named.headers["x-torrix-run-id"]
    stack.run(named_id)

    def ids_of(**f):
        return sorted(r["id"] for r in stack.runs(**f))
    assert ids_of(key_id=keys[1]["id"]) == sorted(
        i for i in ids if runs[i]["key_id"] == keys[1]["id"])
    assert ids_of(user_id=users[0]["id"]) == sorted(
        [i for i in ids if runs[i]["key_id"] == keys[0]["id"]] + [named_id])
    assert ids_of(model="gpt-4o") == sorted(
        i for i in ids if runs[i]["model"] == "gpt-4o")
    assert ids_of(status="error") == [err_id]
    assert ids_of(status=500) == [err_id]
    assert ids_of(name="eval-7") == [named_id]
    assert ids_of(tag="agent=cli") == [err_id]
    assert ids_of(since="2099-01-01T00:00:00Z") == []
    assert ids_of(until="2020-01-01T00:00:00Z") == []
    assert len(ids_of(since="2020-01-01T00:00:00Z")) == len(ids) + 1
    # filters combine
    assert ids_of(key_id=keys[1]["id"], model="gpt-4o-mini") == [err_id]
