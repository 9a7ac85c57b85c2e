#!/usr/bin/env python3
"""Writes an OCI image archive (an OCI image layout in a tar) from files of this machine, without a
container engine: one layer, a config and a manifest, the archive `ctr images import` and
`skopeo copy oci-archive:` read. scripts/image.sh uses it for the operator and the demo gateway,
scripts/cluster.sh for the node's pause image.

    oci_image.py --out IMAGE.tar --name docker.io/library/prescale:dev \\
        --entrypoint /prescale --cmd run --user 65532:65532 \\
        --add target/release/prescale:/prescale --libs-of target/release/prescale

--add SRC:DST copies a file (mode kept); --libs-of BIN adds the shared libraries `ldd BIN` names, and
the dynamic loader, at the paths the loader looks them up (what distroless's cc image carries);
--dir DST adds an empty directory; --file DST:TEXT writes a small file (e.g. /etc/passwd). Every entry
is owned by root and dated at the epoch, so the same inputs give the same digests.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile


def fail(msg):
    print(f"oci_image.py: {msg}", file=sys.stderr)
    sys.exit(1)


def shared_libraries(binary):
    """The files `ldd` resolves for BINARY, as (path on this machine, path in the image)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if out.returncode != 0:
        # a static binary: "not a dynamic executable"
        return []
    libs = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            path = parts[parts.index("=>") + 1]
        elif parts and parts[0].startswith("/"):
            path = parts[0]  # the loader itself
        else:
            continue  # linux-vdso.so.1
        if path == "not":
            fail(f"{binary} needs {parts[0]}, which this machine does not have")
        libs.append((os.path.realpath(path), path))
    return libs


def add_bytes(tar, dst, data, mode):
    info = tarfile.TarInfo(dst.lstrip("/"))
    info.size, info.mode, info.mtime = len(data), mode, 0
    info.uid = info.gid = 0
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar, dst, seen, mode=0o755):
    parts = dst.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d and d not in seen:
            seen.add(d)
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)


def layer(entries, dirs, files):
    """One uncompressed layer tar with ENTRIES (src, dst), empty DIRS and FILES (dst, text)."""
    buf = io.BytesIO()
    seen = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            add_dir(tar, d, seen, 0o1777 if d.rstrip("/") == "/tmp" else 0o755)
        for dst, text in files:
            add_dir(tar, os.path.dirname(dst), seen)
            add_bytes(tar, dst, text.encode(), 0o644)
        for src, dst in entries:
            add_dir(tar, os.path.dirname(dst), seen)
            with open(src, "rb") as f:
                add_bytes(tar, dst, f.read(), os.stat(src).st_mode & 0o7777)
    return buf.getvalue()


def blob(blobs, media_type, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", required=True, help="full reference, e.g. docker.io/library/prescale:dev")
    ap.add_argument("--entrypoint", action="append", default=[])
    ap.add_argument("--cmd", action="append", default=[])
    ap.add_argument("--user", default="65532:65532")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--add", action="append", default=[], metavar="SRC:DST")
    ap.add_argument("--libs-of", action="append", default=[], metavar="BIN")
    ap.add_argument("--dir", action="append", default=[], metavar="DST")
    ap.add_argument("--file", action="append", default=[], metavar="DST:TEXT")
    ap.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()

    entries = []
    for spec in a.add:
        src, sep, dst = spec.partition(":")
        if not sep or not dst.startswith("/"):
            fail(f"--add {spec}: expected SRC:/absolute/destination")
        if not os.path.isfile(src):
            fail(f"--add {spec}: {src} is not a file (build it first)")
        entries.append((src, dst))
    for binary in a.libs_of:
        for lib in shared_libraries(binary):
            if lib not in entries:
                entries.append(lib)
    files = []
    for spec in a.file:
        dst, sep, text = spec.partition(":")
        if not sep:
            fail(f"--file {spec}: expected DST:TEXT")
        files.append((dst, text.replace("\\n", "\n")))

    diff = layer(entries, a.dir, files)
    blobs = {}
    layer_desc = blob(blobs, "application/vnd.oci.image.layer.v1.tar+gzip", gzip.compress(diff, compresslevel=1, mtime=0))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": a.user,
            "Entrypoint": a.entrypoint or None,
            "Cmd": a.cmd or None,
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"] + a.env,
            "Labels": dict(kv.split("=", 1) for kv in a.label) or None,
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(diff).hexdigest()]},
    }
    config["config"] = {k: v for k, v in config["config"].items() if v is not None}
    config_desc = blob(blobs, "application/vnd.oci.image.config.v1+json", json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
    }
    manifest_desc = blob(blobs, "application/vnd.oci.image.manifest.v1+json", json.dumps(manifest, sort_keys=True).encode())
    tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
    manifest_desc["annotations"] = {"io.containerd.image.name": a.name, "org.opencontainers.image.ref.name": tag}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest_desc]}

    with tarfile.open(a.out, "w", format=tarfile.PAX_FORMAT) as tar:
        add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), 0o644)
        add_bytes(tar, "index.json", json.dumps(index, sort_keys=True).encode(), 0o644)
        for digest, data in blobs.items():
            add_bytes(tar, "blobs/sha256/" + digest.split(":")[1], data, 0o644)
    print(f"{a.name} {manifest_desc['digest']} ({len(diff) // 1024} KiB uncompressed)")


if __name__ == "__main__":
    main()
