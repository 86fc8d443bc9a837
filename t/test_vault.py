"""The credential vault: provider credentials sealed in the store (master
key) and in the snapshot (data-plane key), never on disk in plaintext;
master key sources, the start-up check, rotation (API and CLI) and the
migration of a store from before the vault.  torrix-cp only."""

import base64
import ctypes
import ctypes.util
import json
import os
import stat
import shutil
import subprocess
import time

import pytest

import torrix
from torrix import Stack, UPSTREAM_OPENAI_KEY

PLAIN = "sk-vault-test-PLAINTEXT-0123456789abcdef"
WRONG_KEY_MSG = "does not open this store: wrong key?"


# -- libsodium through ctypes: an independent reader of the blob format ---

_SODIUM = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
assert _SODIUM.sodium_init() >= 0


def unseal(key, ad, blob):
    """tx_unseal() in Python: version 1 | alg | nonce | ciphertext | tag.
    Returns the plaintext bytes, or None when it does not open."""
    if len(blob) < 2 or blob[0] != 1:
        return None
    alg = blob[1]
    if alg == 1:
        if not _SODIUM.crypto_aead_aes256gcm_is_available():
            return None
        nlen, fn = 12, _SODIUM.crypto_aead_aes256gcm_decrypt
    elif alg == 2:
        nlen = 24
        fn = _SODIUM.crypto_aead_xchacha20poly1305_ietf_decrypt
    else:
        return None
    nonce, c = blob[2:2 + nlen], blob[2 + nlen:]
    if len(c) < 16:
        return None
    out = ctypes.create_string_buffer(len(c))
    mlen = ctypes.c_ulonglong(0)
    ad = ad.encode()
    rc = fn(out, ctypes.byref(mlen), None, c, ctypes.c_ulonglong(len(c)),
            ad, ctypes.c_ulonglong(len(ad)), nonce, key)
    return out.raw[:mlen.value] if rc == 0 else None


def parse_key_file(path):
    text = path.read_text()
    assert len(text) == 65 and text.endswith("\n"), repr(text[:3])
    assert all(c in "0123456789abcdef" for c in text[:64])
    return bytes.fromhex(text[:64])


# -- LMDB through mdb_dump ---------------------------------------------

def mdb_dump_all(env_dir):
    """{db name: {key bytes: value bytes}} of every named db of an env."""
    out = subprocess.run(["mdb_dump", "-a", str(env_dir)],
                         capture_output=True, text=True, check=True).stdout
    dbs, cur, pending = {}, None, None
    for line in out.splitlines():
        if line.startswith("database="):
            cur = dbs.setdefault(line.split("=", 1)[1], {})
        elif line.startswith(" ") and cur is not None:
            b = bytes.fromhex(line[1:])
            if pending is None:
                pending = b
            else:
                cur[pending], pending = b, None
    return dbs


def tlv(value):
    """tx_record TLV: uint16 tag | uint32 len | bytes, little endian."""
    fields, i = {}, 0
    while i < len(value):
        tag = int.from_bytes(value[i:i + 2], "little")
        n = int.from_bytes(value[i + 2:i + 6], "little")
        fields[tag] = value[i + 6:i + 6 + n]
        i += 6 + n
    return fields


TX_PRV_API_KEY, TX_PRV_SEALED = 4, 5


def snapshot_provider(stack, name):
    snap = mdb_dump_all(stack.data / "snapshot")
    rec = snap["providers"].get(name.encode())
    return tlv(rec) if rec is not None else None


def snapshot_credential(stack, name):
    """The plaintext the nginx module would get for provider `name`."""
    rec = snapshot_provider(stack, name)
    assert rec is not None, "no snapshot record for %s" % name
    assert TX_PRV_API_KEY not in rec, "plaintext credential published"
    assert TX_PRV_SEALED in rec, rec
    dp = parse_key_file(stack.data / "dataplane.key")
    m = unseal(dp, name, rec[TX_PRV_SEALED])
    assert m is not None, "sealed blob does not open with dataplane.key"
    return m.decode()


def all_file_bytes(root):
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                yield p, fh.read()


def assert_absent(root, secret):
    s = secret.encode()
    forms = [s, base64.b64encode(s), base64.urlsafe_b64encode(s),
             base64.b64encode(s).rstrip(b"="), s.hex().encode()]
    for path, data in all_file_bytes(root):
        for f in forms:
            assert f not in data, "%s holds the credential (%r...)" % (
                path, f[:12])


# -- helpers -------------------------------------------------------------

def put_provider(api, name, key, url="http://upstream.example/v1"):
    body = {"api_key": key}
    if name not in ("openai", "anthropic", "ollama"):
        body.update(kind="compat", base_url=url)
    r = api.put("/providers/" + name, body)
    assert r.status_code == 200, r.text
    assert key not in r.text and '"api_key"' not in r.text
    assert r.json()["api_key_set"] is True
    api.stack.secrets.add(key)


def with_env(stack, **env):
    """Makes later starts of torrix-cp (start_cp, cp_cli) see env."""
    stack.cp_env = lambda **extra: Stack.cp_env(stack, **dict(env, **extra))


def start_fails(stack, env=None, args=()):
    """Starts torrix-cp expecting a quick non-zero exit; returns output."""
    e = Stack.cp_env(stack, **(env or {}))
    p = subprocess.run([str(torrix.CP_BIN), "--data", str(stack.data),
                        "--listen", "127.0.0.1:%d" % stack.cp_port,
                        "--foreground"] + list(args),
                       env=e, capture_output=True, timeout=10)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode != 0, "torrix-cp started:\n" + out
    return out


def no_secret_in(text, *secrets):
    for s in secrets:
        assert s not in text


# -- tests ---------------------------------------------------------------

def test_credentials_never_on_disk_in_plaintext(cp):
    put_provider(cp.api, "acme", PLAIN)
    put_provider(cp.api, "anthropic", PLAIN + "-anthropic")

    # the snapshot carries them sealed under the data-plane key
    assert snapshot_credential(cp, "acme") == PLAIN
    assert snapshot_credential(cp, "anthropic") == PLAIN + "-anthropic"
    # a built-in's env credential too
    assert snapshot_credential(cp, "openai") == UPSTREAM_OPENAI_KEY
    # bound to the provider name: another's blob does not open as this one
    rec = snapshot_provider(cp, "acme")
    dp = parse_key_file(cp.data / "dataplane.key")
    assert unseal(dp, "openai", rec[TX_PRV_SEALED]) is None

    # the store holds "api_key_sealed" only
    store = mdb_dump_all(cp.data / "store")
    text = store["providers"][b"acme"].decode()
    assert '"api_key"' not in text and '"api_key_sealed"' in text

    for secret in (PLAIN, PLAIN + "-anthropic", UPSTREAM_OPENAI_KEY):
        assert_absent(cp.data, secret)

    # nothing secret in the API
    r = cp.api.get("/vault")
    assert r.status_code == 200
    v = r.json()
    assert v["algorithm"] in ("aes256gcm", "xchacha20poly1305")
    assert v["master_key_source"] == "generated"
    assert v["credentials"] == 2 and v["rotated_at"] is None
    mk = parse_key_file(cp.data / "master.key")
    dp = parse_key_file(cp.data / "dataplane.key")
    for k in (mk, dp):
        no_secret_in(r.text, k.hex(), base64.b64encode(k).decode())
        no_secret_in(cp.cp_output(), k.hex(), base64.b64encode(k).decode())
    audit = cp.api.get("/audit").text
    assert PLAIN not in audit and mk.hex() not in audit
    assert "master key created at" in cp.cp_output()


def test_key_files(cp):
    mk, dp = cp.data / "master.key", cp.data / "dataplane.key"
    assert stat.S_IMODE(mk.stat().st_mode) == 0o600
    assert stat.S_IMODE(dp.stat().st_mode) == 0o640
    assert parse_key_file(mk) != parse_key_file(dp)
    # kept across restarts
    before = mk.read_text(), dp.read_text()
    cp.stop_cp()
    cp.start_cp()
    assert (mk.read_text(), dp.read_text()) == before


def test_rotate_api_keeps_credentials(cp):
    put_provider(cp.api, "acme", PLAIN)
    mk = cp.data / "master.key"
    old = mk.read_text()
    blob = snapshot_provider(cp, "acme")[TX_PRV_SEALED]

    r = cp.api.post("/vault/rotate")
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["rotated"] is True and j["resealed"] == 1
    assert j["rotated_at"]
    new = mk.read_text()
    assert new != old and len(new) == 65
    assert stat.S_IMODE(mk.stat().st_mode) == 0o600
    assert not (cp.data / "master.key.new").exists()
    no_secret_in(r.text, new.strip(), old.strip())
    cp.secrets.update({old.strip(), new.strip()})

    # audited, without the key
    a = cp.api.get("/audit").json()["data"][0]
    assert a["action"] == "vault.rotate" and a["actor"] != "system"

    # the data-plane key did not change: the snapshot blob is the same
    assert snapshot_provider(cp, "acme")[TX_PRV_SEALED] == blob

    # restart with the new key: the credential still opens; a full
    # republish from the store (snapshot removed) proves it
    cp.stop_cp()
    shutil.rmtree(cp.data / "snapshot")
    cp.start_cp()
    p = cp.api.get("/providers/acme").json()
    assert p["api_key_set"] is True and p["source"] == "store"
    assert snapshot_credential(cp, "acme") == PLAIN
    assert cp.api.get("/vault").json()["rotated_at"] == j["rotated_at"]

    # an explicit new key (base64 here) is what lands in the file
    k2 = os.urandom(32)
    r = cp.api.post("/vault/rotate",
                    {"new_key": base64.urlsafe_b64encode(k2).decode()})
    assert r.status_code == 200, r.text
    assert mk.read_text() == k2.hex() + "\n"
    cp.secrets.add(k2.hex())

    # bad requests
    for body in ({"new_key": "nope"}, {"new_key": 5}, {"bogus": 1},
                 {"new_key": k2.hex()}):
        r = cp.api.post("/vault/rotate", body)
        assert r.status_code == 400, (body, r.text)

    # restart with the OLD key fails loudly
    cp.stop_cp()
    mk.write_text(old)
    out = start_fails(cp)
    assert "master key from %s %s" % (mk, WRONG_KEY_MSG) in out, out
    mk.write_text(k2.hex() + "\n")
    cp.start_cp()
    assert snapshot_credential(cp, "acme") == PLAIN


def test_env_key(cp_stopped):
    s = cp_stopped
    k1, k2 = os.urandom(32), os.urandom(32)
    s.secrets.update({k1.hex(), k2.hex(), base64.b64encode(k1).decode()})
    with_env(s, TORRIX_MASTER_KEY=base64.b64encode(k1).decode())
    s.start_cp()
    assert not (s.data / "master.key").exists()
    assert s.api.get("/vault").json()["master_key_source"] == "env"
    put_provider(s.api, "acme", PLAIN)

    # torrix-cp cannot change the environment: 409 without a new key
    r = s.api.post("/vault/rotate")
    assert r.status_code == 409, r.text
    assert "TORRIX_MASTER_KEY" in r.text
    r = s.api.post("/vault/rotate", {"new_key": k2.hex()})
    assert r.status_code == 200, r.text
    assert "TORRIX_MASTER_KEY" in r.json()["action_required"]
    assert not (s.data / "master.key").exists()
    s.stop_cp()

    # the old key no longer opens the store
    out = start_fails(s, {"TORRIX_MASTER_KEY": k1.hex()})
    assert "master key from TORRIX_MASTER_KEY " + WRONG_KEY_MSG in out, out
    no_secret_in(out, k1.hex(), k2.hex(), PLAIN)

    # the environment wins over $DATA/master.key, which is never made
    with_env(s, TORRIX_MASTER_KEY=k2.hex())
    s.start_cp()
    assert s.api.get("/providers/acme").json()["api_key_set"] is True
    assert snapshot_credential(s, "acme") == PLAIN
    assert not (s.data / "master.key").exists()


def test_wrong_env_key_at_start(cp):
    put_provider(cp.api, "acme", PLAIN)
    cp.stop_cp()
    bad = os.urandom(32).hex()
    cp.secrets.add(bad)
    t0 = time.monotonic()
    out = start_fails(cp, {"TORRIX_MASTER_KEY": bad})
    assert time.monotonic() - t0 < 5
    assert "master key from TORRIX_MASTER_KEY " + WRONG_KEY_MSG in out, out
    out = start_fails(cp, {"TORRIX_MASTER_KEY": "not a key"})
    assert "master key unreadable" in out, out
    # the store is untouched: the right key still starts it
    cp.start_cp()
    assert snapshot_credential(cp, "acme") == PLAIN


def test_missing_master_key_file(cp):
    put_provider(cp.api, "acme", PLAIN)
    cp.stop_cp()
    mk = cp.data / "master.key"
    saved = mk.read_text()
    mk.unlink()
    out = start_fails(cp)
    assert "master key file %s is missing" % mk in out, out
    assert not mk.exists(), "a new master key replaced the lost one"
    mk.write_text(saved)
    os.chmod(mk, 0o600)
    cp.start_cp()


def test_master_key_file_option(cp_stopped, tmp, monkeypatch):
    s = cp_stopped
    keyfile = tmp / "vault.key"
    k = os.urandom(32)
    keyfile.write_text(base64.b64encode(k).decode() + "\n")
    os.chmod(keyfile, 0o600)
    s.secrets.add(k.hex())
    wrapper = tmp / "torrix-cp-wrapper"
    wrapper.write_text('#!/bin/sh\nexec "%s" --master-key-file "%s" "$@"\n'
                       % (torrix.CP_BIN, keyfile))
    os.chmod(wrapper, 0o755)
    real = torrix.CP_BIN
    monkeypatch.setattr(torrix, "CP_BIN", wrapper)

    # the option wins over the environment
    with_env(s, TORRIX_MASTER_KEY=os.urandom(32).hex())
    s.start_cp()
    assert s.api.get("/vault").json()["master_key_source"] == "file"
    assert not (s.data / "master.key").exists()
    put_provider(s.api, "acme", PLAIN)
    r = s.api.post("/vault/rotate")
    assert r.status_code == 200, r.text
    k2 = parse_key_file(keyfile)
    assert k2 != k
    s.secrets.add(k2.hex())
    s.stop_cp()

    monkeypatch.setattr(torrix, "CP_BIN", real)
    keyfile.write_text(k.hex())
    out = start_fails(s, args=("--master-key-file", str(keyfile)))
    assert "master key from master_key_file %s %s" % (
        keyfile, WRONG_KEY_MSG) in out, out


def test_cli_rotate(cp):
    put_provider(cp.api, "acme", PLAIN)
    mk = cp.data / "master.key"
    old = mk.read_text()

    # refused while torrix-cp runs
    r = cp.cp_cli("vault", "rotate", "--data", cp.data)
    assert r.returncode == 1, r
    assert b"in use" in r.stderr
    cp.stop_cp()

    r = cp.cp_cli("vault", "rotate", "--data", cp.data)
    assert r.returncode == 0, r
    new = mk.read_text()
    assert new != old
    cp.secrets.update({old.strip(), new.strip()})
    no_secret_in((r.stdout + r.stderr).decode(), old.strip(), new.strip())

    # a given key, hex or base64, with surrounding whitespace
    k3 = os.urandom(32)
    f = cp.tmp / "new.key"
    f.write_text("  " + base64.b64encode(k3).decode() + "\n\n")
    r = cp.cp_cli("vault", "rotate", "--new-key-file", f, "--data", cp.data)
    assert r.returncode == 0, r
    assert mk.read_text() == k3.hex() + "\n"
    cp.secrets.add(k3.hex())

    cp.start_cp()
    assert cp.api.get("/providers/acme").json()["api_key_set"] is True
    a = cp.api.get("/audit").json()["data"]
    assert [x["actor"] for x in a if x["action"] == "vault.rotate"] == \
        ["cli", "cli"]
    cp.stop_cp()
    shutil.rmtree(cp.data / "snapshot")
    cp.start_cp()
    assert snapshot_credential(cp, "acme") == PLAIN


def test_cli_rotate_env_needs_new_key(cp_stopped):
    s = cp_stopped
    k1 = os.urandom(32)
    s.secrets.add(k1.hex())
    with_env(s, TORRIX_MASTER_KEY=k1.hex())
    s.start_cp()
    put_provider(s.api, "acme", PLAIN)
    s.stop_cp()
    r = s.cp_cli("vault", "rotate", "--data", s.data)
    assert r.returncode == 1 and b"--new-key-file" in r.stderr, r
    k2 = os.urandom(32)
    s.secrets.add(k2.hex())
    f = s.tmp / "k2"
    f.write_text(k2.hex())
    r = s.cp_cli("vault", "rotate", "--new-key-file", f, "--data", s.data)
    assert r.returncode == 0 and b"TORRIX_MASTER_KEY" in r.stdout, r
    with_env(s, TORRIX_MASTER_KEY=k2.hex())
    s.start_cp()
    assert snapshot_credential(s, "acme") == PLAIN


def _dump_text(dbs):
    """mdb_load input (bytevalue format) for dbs."""
    lines = []
    for name, kv in dbs.items():
        lines += ["VERSION=3", "format=bytevalue", "database=" + name,
                  "type=btree", "HEADER=END"]
        for k, v in kv.items():
            lines += [" " + k.hex(), " " + v.hex()]
        lines.append("DATA=END")
    return "\n".join(lines) + "\n"


def test_migrates_plaintext_store(cp):
    """A schema-3 store (no vault check, no master key, a plaintext
    api_key) is sealed at start."""
    cp.stop_cp()
    dbs = mdb_dump_all(cp.data / "store")
    meta = dbs["meta"]
    assert int.from_bytes(meta[b"schema"], "little") == 6
    meta[b"schema"] = (3).to_bytes(8, "little")
    del meta[b"vault_check"]
    dbs["providers"][b"acme"] = (
        '{"kind":"compat","base_url":"http://upstream.example/v1",'
        '"api_key":"%s","_name":"acme"}' % PLAIN).encode()
    cp.secrets.add(PLAIN)
    shutil.rmtree(cp.data / "store")
    shutil.rmtree(cp.data / "snapshot")
    (cp.data / "master.key").unlink()
    (cp.data / "store").mkdir(mode=0o700)
    subprocess.run(["mdb_load", "-f", "/dev/stdin", str(cp.data / "store")],
                   input=_dump_text(dbs).encode(), check=True)

    cp.start_cp()
    out = cp.cp_output()
    assert "store migrated schema=4" in out, out
    assert "store migrated schema=5" in out, out
    assert "master key created at" in out
    p = cp.api.get("/providers/acme").json()
    assert p["api_key_set"] is True and p["source"] == "store"
    assert snapshot_credential(cp, "acme") == PLAIN
    store = mdb_dump_all(cp.data / "store")
    text = store["providers"][b"acme"].decode()
    assert '"api_key"' not in text and '"api_key_sealed"' in text
    assert PLAIN.encode() not in b"".join(
        v for db in store.values() for v in db.values())
    # the store file was compacted: no old page keeps the plaintext
    assert "store compacted" in out
    assert_absent(cp.data, PLAIN)
    assert cp.api.get("/vault").json()["credentials"] == 1
    # the check value is there now: a wrong key is refused
    cp.stop_cp()
    out = start_fails(cp, {"TORRIX_MASTER_KEY": os.urandom(32).hex()})
    assert WRONG_KEY_MSG in out
    cp.start_cp()


def test_migrates_plaintext_webhook_secret(cp):
    """A schema-4 store with a plaintext webhook "secret" gets it sealed
    (master key, AD = the webhook id) at start, and compacted."""
    secret = "whsec-migrate-PLAINTEXT-0123456789abcdef"
    hid = "whk_0123456789abcdefghijklmn"
    put_provider(cp.api, "acme", PLAIN)
    cp.stop_cp()
    dbs = mdb_dump_all(cp.data / "store")
    assert int.from_bytes(dbs["meta"][b"schema"], "little") == 6
    dbs["meta"][b"schema"] = (4).to_bytes(8, "little")
    dbs.setdefault("webhooks", {})[hid.encode()] = (
        '{"id":"%s","name":"","url":"http://127.0.0.1:9/hook",'
        '"events":["budget_exceeded"],"enabled":true,"format":"auto",'
        '"secret":"%s","created_at":"2026-01-01T00:00:00Z",'
        '"updated_at":"2026-01-01T00:00:00Z"}' % (hid, secret)).encode()
    cp.secrets.add(secret)
    shutil.rmtree(cp.data / "store")
    (cp.data / "store").mkdir(mode=0o700)
    subprocess.run(["mdb_load", "-f", "/dev/stdin", str(cp.data / "store")],
                   input=_dump_text(dbs).encode(), check=True)
    assert secret.encode() in (cp.data / "store" / "data.mdb").read_bytes()

    cp.start_cp()
    out = cp.cp_output()
    assert "store migrated schema=5" in out, out
    assert "store migrated schema=4" not in out, out
    assert "store compacted" in out, out
    store = mdb_dump_all(cp.data / "store")
    assert int.from_bytes(store["meta"][b"schema"], "little") == 6
    rec = json.loads(store["webhooks"][hid.encode()])
    assert "secret" not in rec and "secret_sealed" in rec, rec
    mk = parse_key_file(cp.data / "master.key")
    assert unseal(mk, hid, base64.b64decode(rec["secret_sealed"])) == \
        secret.encode()
    # the provider credential, sealed already, is untouched
    assert '"api_key_sealed"' in store["providers"][b"acme"].decode()
    assert_absent(cp.data, secret)
    h = cp.api.get("/webhooks/" + hid).json()
    assert h["secret_set"] is True and "secret" not in h
    assert cp.api.get("/vault").json()["credentials"] == 2
    # a rotation re-seals both
    r = cp.api.post("/vault/rotate")
    assert r.status_code == 200, r.text
    assert r.json()["resealed"] == 2
    mk2 = parse_key_file(cp.data / "master.key")
    cp.secrets.update({mk.hex(), mk2.hex()})
    rec = json.loads(mdb_dump_all(cp.data / "store")["webhooks"][hid.encode()])
    assert unseal(mk2, hid, base64.b64decode(rec["secret_sealed"])) == \
        secret.encode()


@pytest.mark.skipif(os.geteuid() != 0, reason="dataplane_user needs root")
def test_dataplane_key_group(cp_stopped, tmp, monkeypatch):
    """With dataplane_user, dataplane.key gets that user's group (0640):
    the workers' side can read it, not change it."""
    import pwd
    pw = pwd.getpwnam("nobody")
    wrapper = tmp / "torrix-cp-wrapper"
    wrapper.write_text('#!/bin/sh\nexec "%s" --dataplane-user nobody "$@"\n'
                       % torrix.CP_BIN)
    os.chmod(wrapper, 0o755)
    monkeypatch.setattr(torrix, "CP_BIN", wrapper)
    cp_stopped.start_cp()
    st = (cp_stopped.data / "dataplane.key").stat()
    assert st.st_gid == pw.pw_gid and st.st_uid == 0
    assert stat.S_IMODE(st.st_mode) == 0o640
    st = (cp_stopped.data / "master.key").stat()
    assert st.st_gid == 0 and stat.S_IMODE(st.st_mode) == 0o600
    # the workers rename recycled spool files out of spool/free/
    for d in ("spool", "spool/free"):
        st = (cp_stopped.data / d).stat()
        assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid), d


def _index_rows(env_dir):
    """{(index key, run id)} of the store's run index (runs_ix: rows of up
    to 64 run ids under index key + last run id)."""
    dbs = mdb_dump_all(env_dir)
    rows = set()
    for k, v in dbs.get("runs_ix", {}).items():
        assert len(v) % 16 == 0 and 0 < len(v) <= 64 * 16, (k, v)
        ids = [v[i:i + 16] for i in range(0, len(v), 16)]
        assert ids == sorted(ids) and ids[-1] == k[-16:], (k, v)
        rows.update((k[:-16], i) for i in ids)
    return rows


def test_migrates_run_index(stack):
    """A schema-5 store has a run index row per run and index key (the run
    id ending the key, runs_idx); at start it is rebuilt as rows of run ids
    (runs_ix) and the old database dropped, and the runs of a key and the
    errors page as before."""
    k1 = stack.api.create_key(allowed_models=["gpt-4o-mini"])
    k2 = stack.api.create_key(allowed_models=["gpt-4o-mini"])
    ids = {k1["id"]: [], k2["id"]: []}
    for i in range(7):
        k = k1 if i % 3 else k2
        r = stack.chat(k["key"], "gpt-4o-mini")
        assert r.status_code == 200, r.text
        ids[k["id"]].insert(0, r.headers["x-torrix-run-id"])
        time.sleep(0.002)       # distinct milliseconds: a total order
    r = stack.chat(k1["key"], "gpt-4o")      # not allowed: an error run
    assert r.status_code == 403, r.text
    err = r.headers["x-torrix-run-id"]
    stack.wait_runs(8)

    def pages():
        q = ["key_id=" + k1["id"], "key_id=" + k2["id"], "status=error"]
        return [[x["id"] for x in stack.api.list_all("/runs?" + s, limit=2)]
                for s in q]
    before = pages()
    assert before == [[err] + ids[k1["id"]], ids[k2["id"]], [err]], before

    stack.stop_cp()
    store = stack.data / "store"
    rows = _index_rows(store)
    # a key row and a project row per run (the key's project), the error
    assert len([k for k, _ in rows if k[:1] == b"k"]) == 8, rows
    assert len([k for k, _ in rows if k[:1] == b"x"]) == 1, rows
    dbs = mdb_dump_all(store)
    assert int.from_bytes(dbs["meta"][b"schema"], "little") == 6
    dbs["meta"][b"schema"] = (5).to_bytes(8, "little")
    del dbs["runs_ix"]
    dbs["runs_idx"] = {k + i: b"" for k, i in rows}
    shutil.rmtree(store)
    store.mkdir(mode=0o700)
    subprocess.run(["mdb_load", "-f", "/dev/stdin", str(store)],
                   input=_dump_text(dbs).encode(), check=True)

    stack.start_cp()
    out = stack.cp_output()
    assert "store migrated schema=6" in out, out
    assert pages() == before
    stack.stop_cp()
    names = subprocess.run(["mdb_dump", "-l", str(store)], capture_output=True,
                           text=True, check=True).stdout.split()
    assert "runs_ix" in names and "runs_idx" not in names, names
    assert _index_rows(store) == rows
    stack.start_cp()
