#!/usr/bin/env python3
"""Builds fuzz seeds from the corpus captures (/work/shared/corpus/pcaps by default).

    python3 fuzz/make_seeds.py [PCAP_DIR] [--myrr PATH_TO_MYRR_BINARY]

Writes fuzz/seeds/<target>/*. pcapng files are converted with `tshark -F pcap` (needs tshark);
recording_reader seeds of real recordings need a built `myrr` binary (skipped without one).
Each seed is capped at 48 KiB so the set stays small.
"""
import hashlib, os, random, shutil, struct, subprocess, sys, tempfile, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
CAP = 48 * 1024
SERVER_PORTS = {3306, 5432}  # zeek__mysql-on-port-5432.pcap

LINK_CODE = {1: 0, 113: 1, 276: 2, 0: 3, 108: 4, 101: 5, 12: 5, 14: 5, 228: 5, 229: 5}


def read_pcap(path):
    """Yields (ts_us, linktype, frame). Converts pcapng through tshark."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"\x0a\x0d\x0d\x0a":
        tmp = tempfile.NamedTemporaryFile(suffix=".pcap", delete=False)
        tmp.close()
        subprocess.run(["tshark", "-r", path, "-F", "pcap", "-w", tmp.name], check=True,
                       stderr=subprocess.DEVNULL)
        try:
            yield from read_pcap(tmp.name)
        finally:
            os.unlink(tmp.name)
        return
    data = open(path, "rb").read()
    m = data[:4]
    if m in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif m in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError(f"{path}: not pcap")
    nano = m in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(e + "I", data[20:24])[0] & 0xFFFF
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(e + "IIII", data[pos:pos + 16])
        pos += 16
        frame = data[pos:pos + incl]
        pos += incl
        us = sec * 1_000_000 + (frac // 1000 if nano else frac)
        yield us, linktype, frame


def ip_of(linktype, frame):
    """Returns the IP packet bytes of a frame, or None."""
    if linktype == 1:
        off, et = 14, struct.unpack(">H", frame[12:14])[0] if len(frame) >= 14 else 0
        while et in (0x8100, 0x88A8) and len(frame) >= off + 4:
            et = struct.unpack(">H", frame[off + 2:off + 4])[0]
            off += 4
        return frame[off:] if et in (0x0800, 0x86DD) else None
    if linktype == 113:
        return frame[16:] if len(frame) >= 16 else None
    if linktype == 276:
        return frame[20:] if len(frame) >= 20 else None
    if linktype in (0, 108):
        return frame[4:]
    if linktype in (101, 12, 14, 228, 229):
        return frame
    return None


def tcp_of(ip):
    """(src, dst, sport, dport, seq, flags, payload) or None."""
    if not ip:
        return None
    v = ip[0] >> 4
    if v == 4 and len(ip) >= 20:
        ihl = (ip[0] & 15) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        if ip[9] != 6:
            return None
        src, dst = ip[12:16], ip[16:20]
        seg = ip[ihl:total] if total >= ihl else ip[ihl:]
    elif v == 6 and len(ip) >= 40:
        if ip[6] != 6:
            return None  # extension headers: not in this corpus
        plen = struct.unpack(">H", ip[4:6])[0]
        src, dst = ip[8:24], ip[24:40]
        seg = ip[40:40 + plen]
    else:
        return None
    if len(seg) < 20:
        return None
    sport, dport, seq = struct.unpack(">HHI", seg[:8])
    doff = (seg[12] >> 4) * 4
    flags = seg[13]
    return src, dst, sport, dport, seq, flags, seg[doff:]


def flows(path):
    """Per flow (client, server): list of ('d', dir, bytes, ts) / ('g', dir, n) in capture
    order, plus whether the SYN was seen. Retransmitted bytes are trimmed."""
    out = {}
    for ts, lt, frame in read_pcap(path):
        t = tcp_of(ip_of(lt, frame))
        if not t:
            continue
        src, dst, sport, dport, seq, flags, payload = t
        if dport in SERVER_PORTS:
            key, d = (src, sport, dst, dport), 0
        elif sport in SERVER_PORTS:
            key, d = (dst, dport, src, sport), 1
        else:
            continue
        f = out.setdefault(key, {"ops": [], "syn": False, "next": [None, None]})
        if flags & 2:
            if d == 0:
                f["syn"] = True
            f["next"][d] = (seq + 1) & 0xFFFFFFFF
            continue
        if not payload:
            continue
        nxt = f["next"][d]
        if nxt is None:
            nxt = seq
        off = (seq - nxt) & 0xFFFFFFFF
        if off >= 0x80000000:  # before next: retransmission / overlap
            skip = (0x100000000 - off)
            if skip >= len(payload):
                continue
            payload = payload[skip:]
        elif off > 0:
            f["ops"].append(("g", d, off))
        f["ops"].append(("d", d, payload, ts))
        f["next"][d] = ((nxt + (off if off < 0x80000000 else 0)) + len(payload)) & 0xFFFFFFFF
    return out


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    h = hashlib.sha1(data).hexdigest()[:12]
    with open(os.path.join(d, f"{name}-{h}"), "wb") as f:
        f.write(data)


def plain_packets(stream):
    """Offsets after each whole plain packet."""
    pos, ends = 0, []
    while pos + 4 <= len(stream):
        n = int.from_bytes(stream[pos:pos + 3], "little")
        if pos + 4 + n > len(stream):
            break
        pos += 4 + n
        ends.append(pos)
    return ends


def compressed_ok(rest):
    pos, frames = 0, 0
    while pos + 7 <= len(rest):
        clen = int.from_bytes(rest[pos:pos + 3], "little")
        ulen = int.from_bytes(rest[pos + 4:pos + 7], "little")
        body = rest[pos + 7:pos + 7 + clen]
        if len(body) < clen:
            break
        if ulen:
            try:
                if len(zlib.decompress(body)) != ulen:
                    return False
            except zlib.error:
                return False
        pos += 7 + clen
        frames += 1
    return frames > 0 and pos == len(rest)


def framing_seeds(name, fl):
    for (c, cp, s, sp), f in fl.items():
        for d in (0, 1):
            stream = b"".join(o[2] for o in f["ops"] if o[0] == "d" and o[1] == d)
            if not stream:
                continue
            stream = stream[:CAP]
            write("framing", f"{name}-{d}", bytes([0, 7]) + struct.pack("<I", 0) + stream)
            # A compressed session: switch after the handshake packet(s).
            for end in plain_packets(stream)[:4]:
                if compressed_ok(stream[end:]):
                    write("framing", f"{name}-{d}-z", bytes([1, 3]) + struct.pack("<I", end) + stream)
                    break


def conn_seeds(name, fl):
    for i, ((c, cp, s, sp), f) in enumerate(fl.items()):
        out = bytearray([1 if f["syn"] else 0])
        for o in f["ops"]:
            if o[0] == "g":
                op = bytes([2 | (o[1] << 2)]) + struct.pack("<H", min(o[2], 0xFFFF))
            else:
                op = b""
                for k in range(0, len(o[2]), 0xFFFF):
                    part = o[2][k:k + 0xFFFF]
                    op += bytes([o[1] | (1 << 2)]) + struct.pack("<H", len(part)) + part
            if len(out) + len(op) > CAP:
                break
            out += op
        if len(out) > 1:
            write("conn", f"{name}-{i}", bytes(out))
        if i >= 7:
            break


def tls_session_seeds(name, fl):
    """The wireshark-notes TLS captures, whose keys the tls_session target holds: the conn
    target's ops, flags 1 (SYN seen)."""
    if not name.startswith("wireshark-notes__"):
        return
    for i, f in enumerate(fl.values()):
        out = bytearray([1])
        for o in f["ops"]:
            if o[0] == "g":
                out += bytes([2 | (o[1] << 2)]) + struct.pack("<H", min(o[2], 0xFFFF))
            else:
                for k in range(0, len(o[2]), 0xFFFF):
                    part = o[2][k:k + 0xFFFF]
                    out += bytes([o[1]]) + struct.pack("<H", len(part)) + part
        write("tls_session", f"{name}-{i}", bytes(out))


def tls_keylog_seeds(pcap, keylog, port):
    """tls_session seeds from a capture of our own TLS server with its client's key log
    (AEAD suites, which the wireshark-notes captures lack): per connection, flags 3 (SYN
    seen, key log lines first) with that session's key log lines, its ops up to CAP; and the
    same with the second statement's client data segment turned into a gap, so that the reader
    passes over a gap (Session::resync)."""
    SERVER_PORTS.add(port)
    lines = open(keylog, "rb").read().splitlines()
    for i, f in enumerate(flows(pcap).values()):
        client = b"".join(o[2] for o in f["ops"] if o[0] == "d" and o[1] == 0)
        # The SSLRequest (4 + 32 bytes), then the ClientHello: its random at 11..43.
        random = client[36 + 11:36 + 43].hex().upper().encode()
        keys = b"\n".join(l for l in lines if random in l.upper()) + b"\n"
        if len(keys) < 60:
            continue
        ops = [o for o in f["ops"] if o[0] == "d"]
        client_ops = [k for k, o in enumerate(ops) if o[1] == 0]
        for gap in (None, client_ops[5] if len(client_ops) > 6 else None):
            out = bytearray([3]) + struct.pack("<H", len(keys)) + keys
            for k, o in enumerate(ops):
                if k == gap:
                    out += bytes([2 | (o[1] << 2)]) + struct.pack("<H", min(len(o[2]), 0xFFFF))
                    continue
                part = o[2][:0xFFFF]
                out += bytes([o[1]]) + struct.pack("<H", len(part)) + part
                if len(out) > CAP:
                    break
            write("tls_session", f"aead-{i}{'-gap' if gap is not None else ''}", bytes(out))
            if gap is None and len(client_ops) <= 6:
                break


def capture_seeds(name, path):
    cap = CAP // 2
    out = bytearray([0])
    last = None
    n = 0
    for ts, lt, frame in read_pcap(path):
        if lt not in LINK_CODE:
            return
        dt = 0 if last is None else max(0, ts - last)
        last = ts
        dtf = dt if dt < 0x8000 else 0x8000 | min(dt // 1_000_000, 0x7FFF)
        fr = frame[:0xFFFF]
        rec = bytes([LINK_CODE[lt]]) + struct.pack("<HH", dtf, len(fr)) + fr
        if len(out) + len(rec) > cap:
            write("capture_packets", f"{name}-{n}", bytes(out))
            n += 1
            if n >= 2:
                return
            out = bytearray([0])
        out += rec
    if len(out) > 1:
        write("capture_packets", f"{name}-{n}", bytes(out))


def reassembly_seeds(streams):
    rnd = random.Random(1)
    for i, stream in enumerate(streams[:24]):
        stream = stream[:1500]
        segs, pos = [], 0
        while pos < len(stream):
            n = rnd.randint(1, 200)
            segs.append((pos, n))
            pos += n
        first, rest = segs[:1], segs[1:]
        rnd.shuffle(rest)
        ops = bytearray()
        for a, b in first + rest:
            ops += bytes([0]) + struct.pack("<HH", a, b)
            if rnd.random() < 0.2:  # a retransmission overlapping the previous
                ops += bytes([1]) + struct.pack("<HH", max(0, a - 10), b + 20)
            if rnd.random() < 0.1:
                ops += bytes([2]) + struct.pack("<HH", min(len(stream), a + b + rnd.randint(0, 50)), 0)
        ops += bytes([3]) + struct.pack("<HH", 0, 0)
        limit = rnd.choice([0, 64, 512, 4096])
        flags = i & 1  # with / without SYN
        head = bytes([flags]) + struct.pack("<IHH", rnd.getrandbits(32) if i % 3 else 0xFFFFFF00,
                                             limit, len(stream))
        write("reassembly", f"stream-{i}", head + stream + bytes(ops))
        # wild mode: same segments at raw sequence numbers around the wrap
        wops = bytearray()
        base = 0xFFFFFF00
        for a, b in first + rest:
            wops += bytes([0]) + struct.pack("<IH", (base + a) & 0xFFFFFFFF, b)
        head = bytes([2 | flags]) + struct.pack("<IHH", base - 1, limit, len(stream))
        write("reassembly", f"wild-{i}", head + stream + bytes(wops))


def recording_seeds(pcaps, myrr):
    rnd = random.Random(2)
    # mode 1 (roundtrip) and mode 2 (framed) seeds: random spec bytes
    for i in range(16):
        spec = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(16, 600)))
        write("recording_reader", f"roundtrip-{i}", bytes([1, rnd.randint(1, 31)]) + spec)
    if not myrr:
        return
    with tempfile.TemporaryDirectory() as td:
        for p in pcaps:
            out = os.path.join(td, "r.myrr")
            r = subprocess.run([myrr, "capture", "-r", p, "-o", out],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode != 0 or not os.path.exists(out):
                continue
            data = open(out, "rb").read()
            if len(data) <= CAP:
                name = os.path.basename(p).rsplit(".", 1)[0]
                write("recording_reader", f"file-{name}", b"\x00" + data)
                # mode 2: header bytes and the first block, decompressed
                hlen = struct.unpack("<I", data[10:14])[0]
                header = data[18:18 + hlen]
                blk = data[18 + hlen:]
                if len(blk) >= 8:
                    blen = struct.unpack("<I", blk[:4])[0]
                    try:
                        import zstandard  # optional
                        raw = zstandard.ZstdDecompressor().decompress(blk[8:8 + blen])
                    except Exception:
                        raw = None
                    if raw is None:
                        z = subprocess.run(["zstd", "-d", "-c"], input=blk[8:8 + blen],
                                           capture_output=True)
                        raw = z.stdout if z.returncode == 0 else None
                    if raw and len(raw) <= CAP:
                        write("recording_reader", f"framed-{name}",
                              b"\x02" + struct.pack("<H", hlen) + header + raw)
            os.unlink(out)


def main():
    args = sys.argv[1:]
    myrr = None
    if "--myrr" in args:
        i = args.index("--myrr")
        myrr = args[i + 1]
        del args[i:i + 2]
    tls = None
    if "--tls" in args:
        i = args.index("--tls")
        tls = (args[i + 1], args[i + 2], int(args[i + 3]))
        del args[i:i + 4]
    src = args[0] if args else "/work/shared/corpus/pcaps"
    for t in ("framing", "conn", "reassembly", "recording_reader", "capture_packets",
              "tls_session"):
        shutil.rmtree(os.path.join(SEEDS, t), ignore_errors=True)
    pcaps = sorted(os.path.join(src, f) for f in os.listdir(src)
                   if f.endswith((".pcap", ".pcapng", ".cap")))
    streams = []
    for p in pcaps:
        name = os.path.basename(p).rsplit(".", 1)[0]
        try:
            fl = flows(p)
        except Exception as e:  # noqa
            print(f"skip {p}: {e}", file=sys.stderr)
            continue
        framing_seeds(name, fl)
        conn_seeds(name, fl)
        tls_session_seeds(name, fl)
        capture_seeds(name, p)
        for f in list(fl.values())[:1]:
            for d in (1, 0):
                s = b"".join(o[2] for o in f["ops"] if o[0] == "d" and o[1] == d)
                if s:
                    streams.append(s)
    reassembly_seeds(streams)
    recording_seeds(pcaps, myrr)
    if tls:
        tls_keylog_seeds(*tls)
    for t in sorted(os.listdir(SEEDS)):
        d = os.path.join(SEEDS, t)
        files = os.listdir(d)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in files)
        print(f"{t}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    main()
