// SPDX-License-Identifier: (MIT OR Apache-2.0) AND GPL-2.0-only
// The eBPF side of `myrr capture --tls-probe`: what the server's TLS library decrypted and
// is about to encrypt, with the socket it came from.
//
// Probes (attached by tlsprobe/src/lib.rs to one process's TLS library):
// - SSL_read / SSL_read_ex / SSL_write / SSL_write_ex, entry and return: the entry keeps the
//   call's arguments per thread (in task storage; built with -DCALLS_BY_TID, for kernels
//   before 5.11, in a hash by thread id); the return copies what the call actually moved (its return
//   value, or *readbytes / *written) into the ring buffer, in chunks of at most CHUNK bytes.
//   Where user space proves from the machine code (tlsprobe/src/elf.rs) that SSL_read and
//   SSL_read_ex both call one internal function with SSL_read_ex's arguments (OpenSSL's
//   ssl_read_internal; the same for writes), the *_ex programs are attached there instead of
//   to the two exported functions: it starts with an instruction the kernel emulates, while
//   SSL_read's first one must be single-stepped out of line, a second trap per call.
// - SSL_set_fd: a new TLS session on a socket (its fd): with the key derivation probed, its
//   SSL object is `keyed` (the data probes pass over it) and the thread's next derivations
//   are its handshake's; SSL_free: the session is over.
// - EVP_KDF_derive (libcrypto), entry and return: the secrets of a handshake (see below).
//   The data probes above are attached by user space only while sessions that began before
//   the probe are open.
// - raw tracepoint sys_enter: a read/write-family syscall on a thread inside an SSL_* call
//   gives the fd of the SSL object (OpenSSL's own structures are never read). Data served from
//   OpenSSL's buffer without a syscall takes the fd learnt for that SSL object before.
// Every byte that cannot be delivered (ring buffer full, a call larger than MAX_CHUNKS chunks)
// is counted, in total and per SSL object and direction, and the next delivered chunk of that
// object and direction carries the count, so user space makes a gap of it.
//
// x86_64 only (the register layout below).

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

// The kernel's struct pt_regs on x86_64.
struct regs {
    unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip,
        cs, flags, sp, ss;
};

#define CHUNK 16384
#define MAX_CHUNKS 16

enum kind { DATA = 0, SET_FD = 1, FREE = 2, SECRET = 3 };
// SECRET records: `dir` says which secret.
enum secret { C_HS = 0, S_HS = 1, C_AP = 2, S_AP = 3, MASTER = 4 };
enum dir { READ = 0, WRITE = 1 };

// One ring buffer record; `data` holds `len` bytes.
struct event {
    __u64 ts_ns;       // bpf_ktime_get_ns (CLOCK_MONOTONIC)
    __u64 ssl;         // the SSL object
    __u64 lost_before; // bytes of this object and direction lost before this chunk
    __u32 tgid;
    __u32 tid;
    __s32 fd;          // -1: not known yet
    __u32 len;         // bytes in data
    __u32 offset;      // of this chunk in the call's bytes
    __u32 total;       // bytes the call moved
    __u8 kind;
    __u8 dir;
    __u8 pad[6];
    __u8 data[CHUNK];
};

struct call {
    __u64 ssl;
    __u64 buf;
    __u64 size_ptr; // *_ex: where the byte count goes
    __u64 ts_ns;
    __s32 fd;
    __s32 fd_known; // the fd ssl_fd had at entry, -1: none
    __u8 dir;
    __u8 ex;
    __u8 active;    // between the entry and the return (a task's storage outlives its calls)
    __u8 pad[5];
};

struct loss_key {
    __u64 ssl;
    __u32 dir;
    __u32 pad;
};

struct handshake {
    __u64 ssl;
    __s32 fd;
    __u32 pad;
};

struct derivation {
    __u64 out;
    __u64 ssl;
    __u32 outlen;
    __s32 fd;
    __u8 which;
    __u8 pad[7];
};

// [0]: the process probed (tgid); [1]: 1 when the key derivations are probed (sessions set
// up from then on are read with their secrets, not by the data probes).
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 2);
    __type(key, __u32);
    __type(value, __u32);
} target SEC(".maps");

// The call in progress on each thread: in the thread's own storage (no hashing, no locks;
// Linux 5.11+), or, built with -DCALLS_BY_TID for older kernels, in a hash by thread id.
// call_begin returns whether an earlier call of the thread was still in progress.
#ifndef CALLS_BY_TID
struct task_struct;
struct {
    __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct call);
} calls SEC(".maps");

static __always_inline int call_begin(struct call *n) {
    struct call *c = bpf_task_storage_get(&calls, bpf_get_current_task_btf(), 0,
                                          BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!c)
        return 0;
    int unfinished = c->active;
    *c = *n;
    return unfinished;
}

static __always_inline struct call *call_find(void) {
    struct call *c = bpf_task_storage_get(&calls, bpf_get_current_task_btf(), 0, 0);
    return c && c->active ? c : 0;
}

static __always_inline void call_end(struct call *c) { c->active = 0; }
#else
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, struct call);
} calls SEC(".maps");

static __always_inline int call_begin(struct call *n) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    int unfinished = bpf_map_lookup_elem(&calls, &tid) != 0;
    bpf_map_update_elem(&calls, &tid, n, BPF_ANY);
    return unfinished;
}

static __always_inline struct call *call_find(void) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    return bpf_map_lookup_elem(&calls, &tid);
}

static __always_inline void call_end(struct call *c) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    bpf_map_delete_elem(&calls, &tid);
}
#endif

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, __s32);
} ssl_fd SEC(".maps");

// SSL objects given their socket while the probe ran: their handshake's secrets are read
// (see the key derivation below), so the data probes pass them over.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, __u8);
} keyed SEC(".maps");

// Thread → the socket of the TLS session it set up last (SSL_set_fd): the handshake that
// follows on the thread derives that session's secrets.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, struct handshake);
} handshaking SEC(".maps");

// Thread → a key derivation in progress whose output is a secret we want.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, struct derivation);
} deriving SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, struct loss_key);
    __type(value, __u64);
} pending_loss SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct event);
} scratch SEC(".maps");

// [0] records lost, [1] bytes lost, [2] records delivered, [3] calls whose byte count could
// not be read, [4] calls that found an earlier one of their thread unfinished.
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 5);
    __type(key, __u32);
    __type(value, __u64);
} counters SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 64 << 20);
} events SEC(".maps");

static __always_inline int ours(void) {
    __u32 zero = 0;
    __u32 *t = bpf_map_lookup_elem(&target, &zero);
    return t && *t == (__u32)(bpf_get_current_pid_tgid() >> 32);
}

static __always_inline int keys_on(void) {
    __u32 one = 1;
    __u32 *k = bpf_map_lookup_elem(&target, &one);
    return k && *k;
}

static __always_inline void count(__u32 i, __u64 n) {
    __u64 *c = bpf_map_lookup_elem(&counters, &i);
    if (c)
        *c += n;
}

static __always_inline void lose(__u64 ssl, __u8 dir, __u64 bytes) {
    struct loss_key k = {.ssl = ssl, .dir = dir};
    __u64 *p = bpf_map_lookup_elem(&pending_loss, &k);
    if (p) {
        __sync_fetch_and_add(p, bytes);
    } else {
        bpf_map_update_elem(&pending_loss, &k, &bytes, BPF_ANY);
    }
    count(0, 1);
    count(1, bytes);
}

static __always_inline int enter(struct regs *ctx, __u8 dir, __u8 ex) {
    if (!ours())
        return 0;
    __u64 ssl = ctx->di;
    if (bpf_map_lookup_elem(&keyed, &ssl))
        return 0; // read from the packets with its secrets
    struct call n = {
        .ssl = ctx->di,
        .buf = ctx->si,
        .size_ptr = ex ? ctx->cx : 0,
        .ts_ns = bpf_ktime_get_ns(),
        .fd = -1,
        .fd_known = -1,
        .dir = dir,
        .ex = ex,
        .active = 1,
    };
    __s32 *fd = bpf_map_lookup_elem(&ssl_fd, &n.ssl);
    if (fd)
        n.fd = n.fd_known = *fd;
    if (call_begin(&n)) {
        // A call on this thread whose return was never seen, or one public SSL_* function
        // calling another (not in OpenSSL 1.1 and 3): the latest call records.
        count(4, 1);
    }
    return 0;
}

static __always_inline int leave(struct regs *ctx) {
    if (!ours())
        return 0;
    __u64 id = bpf_get_current_pid_tgid();
    __u32 tid = (__u32)id;
    struct call *c = call_find();
    if (!c)
        return 0;
    struct call k = *c;
    call_end(c);
    long rc = (long)ctx->ax;
    __u64 total = 0;
    if (k.ex) {
        // SSL_*_ex: 1, or 0 on failure; their internal function (see below): > 0, or <= 0.
        if ((int)rc <= 0)
            return 0;
        if (bpf_probe_read_user(&total, sizeof(total), (void *)k.size_ptr)) {
            count(3, 1);
            return 0;
        }
    } else {
        if ((int)rc <= 0)
            return 0;
        total = (__u64)(int)rc;
    }
    if (k.fd >= 0 && k.fd != k.fd_known)
        bpf_map_update_elem(&ssl_fd, &k.ssl, &k.fd, BPF_ANY);
    __u32 zero = 0;
    struct event *e = bpf_map_lookup_elem(&scratch, &zero);
    if (!e)
        return 0;
    e->ts_ns = k.dir == READ ? bpf_ktime_get_ns() : k.ts_ns;
    e->ssl = k.ssl;
    e->tgid = id >> 32;
    e->tid = tid;
    e->fd = k.fd;
    e->total = total > 0xffffffff ? 0xffffffff : (__u32)total;
    e->kind = DATA;
    e->dir = k.dir;
    struct loss_key lk = {.ssl = k.ssl, .dir = k.dir};
    __u64 *pending = bpf_map_lookup_elem(&pending_loss, &lk);
    e->lost_before = pending ? *pending : 0;
    __u64 sent = 0;
    for (int i = 0; i < MAX_CHUNKS; i++) {
        if (sent >= total)
            break;
        __u64 n = total - sent;
        if (n > CHUNK)
            n = CHUNK;
        if (bpf_probe_read_user(e->data, n, (void *)(k.buf + sent))) {
            break;
        }
        e->len = n;
        e->offset = sent;
        if (bpf_ringbuf_output(&events, e, offsetof(struct event, data) + n, BPF_RB_NO_WAKEUP)) {
            break;
        }
        count(2, 1);
        if (e->lost_before) {
            bpf_map_delete_elem(&pending_loss, &lk);
            e->lost_before = 0;
        }
        sent += n;
    }
    if (sent < total)
        lose(k.ssl, k.dir, total - sent);
    return 0;
}

SEC("uprobe")
int myrr_read_in(struct regs *ctx) { return enter(ctx, READ, 0); }
SEC("uprobe")
int myrr_readx_in(struct regs *ctx) { return enter(ctx, READ, 1); }
SEC("uprobe")
int myrr_write_in(struct regs *ctx) { return enter(ctx, WRITE, 0); }
SEC("uprobe")
int myrr_writex_in(struct regs *ctx) { return enter(ctx, WRITE, 1); }
SEC("uretprobe")
int myrr_ssl_out(struct regs *ctx) { return leave(ctx); }

static __always_inline void notice(__u64 ssl, __s32 fd, __u8 kind) {
    struct event *e;
    __u32 zero = 0;
    e = bpf_map_lookup_elem(&scratch, &zero);
    if (!e)
        return;
    __u64 id = bpf_get_current_pid_tgid();
    e->ts_ns = bpf_ktime_get_ns();
    e->ssl = ssl;
    e->tgid = id >> 32;
    e->tid = (__u32)id;
    e->fd = fd;
    e->len = 0;
    e->offset = 0;
    e->total = 0;
    e->kind = kind;
    e->dir = 0;
    e->lost_before = 0;
    if (bpf_ringbuf_output(&events, e, offsetof(struct event, data), BPF_RB_NO_WAKEUP))
        count(0, 1);
}

// SSL_set_fd(ssl, fd): a TLS session begins on this socket.
SEC("uprobe")
int myrr_set_fd(struct regs *ctx) {
    if (!ours())
        return 0;
    __u64 ssl = ctx->di;
    __s32 fd = (__s32)ctx->si;
    bpf_map_update_elem(&ssl_fd, &ssl, &fd, BPF_ANY);
    if (keys_on()) {
        __u8 one = 1;
        bpf_map_update_elem(&keyed, &ssl, &one, BPF_ANY);
        __u32 tid = (__u32)bpf_get_current_pid_tgid();
        struct handshake h = {.ssl = ssl, .fd = fd};
        bpf_map_update_elem(&handshaking, &tid, &h, BPF_ANY);
    }
    notice(ssl, fd, SET_FD);
    return 0;
}

// SSL_free(ssl): the session is over; its SSL object's memory may hold another one next.
SEC("uprobe")
int myrr_free(struct regs *ctx) {
    if (!ours())
        return 0;
    __u64 ssl = ctx->di;
    __s32 *fd = bpf_map_lookup_elem(&ssl_fd, &ssl);
    notice(ssl, fd ? *fd : -1, FREE);
    bpf_map_delete_elem(&ssl_fd, &ssl);
    bpf_map_delete_elem(&keyed, &ssl);
    struct loss_key k = {.ssl = ssl, .dir = READ};
    bpf_map_delete_elem(&pending_loss, &k);
    k.dir = WRITE;
    bpf_map_delete_elem(&pending_loss, &k);
    return 0;
}

// The syscalls a socket BIO reads and writes with, x86_64 numbers.
#define NR_READ 0
#define NR_WRITE 1
#define NR_READV 19
#define NR_WRITEV 20
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47

SEC("raw_tracepoint/sys_enter")
int myrr_sys_enter(struct bpf_raw_tracepoint_args *ctx) {
    if (!ours())
        return 0;
    unsigned long nr = ctx->args[1];
    if (nr != NR_READ && nr != NR_WRITE && nr != NR_READV && nr != NR_WRITEV &&
        nr != NR_SENDTO && nr != NR_RECVFROM && nr != NR_SENDMSG && nr != NR_RECVMSG)
        return 0;
    struct call *c = call_find();
    if (!c)
        return 0;
    struct regs *regs = (struct regs *)ctx->args[0];
    unsigned long di = 0;
    if (bpf_probe_read_kernel(&di, sizeof(di), &regs->di))
        return 0;
    c->fd = (__s32)di;
    return 0;
}

// The key derivations of a handshake (OpenSSL 3 derives every TLS secret through the public
// EVP_KDF_derive(ctx, out, outlen, params), its inputs named in an OSSL_PARAM array, a public
// and stable layout): on a thread that set up a session (SSL_set_fd), TLS 1.3's four traffic
// secrets are the outputs of the derivations labelled "c hs traffic", "s hs traffic",
// "c ap traffic" and "s ap traffic"; TLS 1.2's master secret is the input of the derivation
// whose first seed is "key expansion" (also on a resumed session, which derives no new master
// secret). A handful of derivations per handshake, none per query.
struct ossl_param {
    __u64 key;
    __u32 data_type;
    __u32 pad;
    __u64 data;
    __u64 data_size;
    __u64 return_size;
};

#define MAX_PARAMS 10
#define MAX_SECRET 64

static __always_inline int name_is(__u64 word, __u64 name, int len) {
    __u64 mask = len >= 8 ? ~0ULL : ((1ULL << (8 * len)) - 1);
    return (word & mask) == name;
}

// Little-endian names, NUL included.
#define NAME_LABEL 0x006c6562616cULL     // "label"
#define NAME_SEED 0x0064656573ULL        // "seed"
#define NAME_SECRET 0x00746572636573ULL  // "secret"

static __always_inline void emit_secret(__u64 ssl, __s32 fd, __u8 which, __u64 from, __u32 len) {
    __u32 zero = 0;
    struct event *e = bpf_map_lookup_elem(&scratch, &zero);
    if (!e)
        return;
    if (len > MAX_SECRET)
        return;
    if (bpf_probe_read_user(e->data, len, (void *)from))
        return;
    __u64 id = bpf_get_current_pid_tgid();
    e->ts_ns = bpf_ktime_get_ns();
    e->ssl = ssl;
    e->tgid = id >> 32;
    e->tid = (__u32)id;
    e->fd = fd;
    e->len = len;
    e->offset = 0;
    e->total = len;
    e->kind = SECRET;
    e->dir = which;
    e->lost_before = 0;
    if (bpf_ringbuf_output(&events, e, offsetof(struct event, data) + MAX_SECRET, BPF_RB_NO_WAKEUP))
        count(0, 1);
    else
        count(2, 1);
}

SEC("uprobe")
int myrr_kdf_in(struct regs *ctx) {
    if (!ours())
        return 0;
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct handshake *h = bpf_map_lookup_elem(&handshaking, &tid);
    if (!h)
        return 0;
    struct handshake hs = *h;
    __u64 params = ctx->cx;
    int which = -1;
    int first_seed = 1, key_expansion = 0;
    __u64 secret = 0, secret_len = 0;
    for (int i = 0; i < MAX_PARAMS; i++) {
        struct ossl_param p;
        if (bpf_probe_read_user(&p, sizeof(p), (void *)(params + i * sizeof(p))))
            return 0;
        if (!p.key)
            break;
        __u64 name = 0;
        if (bpf_probe_read_user(&name, sizeof(name), (void *)p.key))
            continue;
        if (name_is(name, NAME_LABEL, 6) && p.data_size == 12) {
            char l[12];
            if (bpf_probe_read_user(l, sizeof(l), (void *)p.data))
                continue;
            // "c hs traffic", "s hs traffic", "c ap traffic", "s ap traffic"
            if (l[1] != ' ' || l[4] != ' ' || l[5] != 't' || l[6] != 'r' || l[7] != 'a' ||
                l[8] != 'f' || l[9] != 'f' || l[10] != 'i' || l[11] != 'c')
                continue;
            int client = l[0] == 'c', server = l[0] == 's';
            int hs = l[2] == 'h' && l[3] == 's', ap = l[2] == 'a' && l[3] == 'p';
            if ((client || server) && (hs || ap))
                which = (ap ? 2 : 0) + (server ? 1 : 0);
        } else if (name_is(name, NAME_SEED, 5)) {
            if (first_seed && p.data_size == 13) {
                char l[13];
                if (!bpf_probe_read_user(l, sizeof(l), (void *)p.data) && l[0] == 'k' &&
                    l[1] == 'e' && l[2] == 'y' && l[3] == ' ' && l[4] == 'e' && l[5] == 'x' &&
                    l[6] == 'p' && l[7] == 'a' && l[8] == 'n' && l[9] == 's' && l[10] == 'i' &&
                    l[11] == 'o' && l[12] == 'n')
                    key_expansion = 1;
            }
            first_seed = 0;
        } else if (name_is(name, NAME_SECRET, 7)) {
            secret = p.data;
            secret_len = p.data_size;
        }
    }
    if (key_expansion && secret && secret_len == 48) {
        emit_secret(hs.ssl, hs.fd, MASTER, secret, 48);
        return 0;
    }
    if (which < 0)
        return 0;
    struct derivation d = {
        .out = ctx->si,
        .ssl = hs.ssl,
        .outlen = (__u32)ctx->dx,
        .fd = hs.fd,
        .which = (__u8)which,
    };
    bpf_map_update_elem(&deriving, &tid, &d, BPF_ANY);
    return 0;
}

SEC("uretprobe")
int myrr_kdf_out(struct regs *ctx) {
    if (!ours())
        return 0;
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct derivation *p = bpf_map_lookup_elem(&deriving, &tid);
    if (!p)
        return 0;
    struct derivation d = *p;
    bpf_map_delete_elem(&deriving, &tid);
    if ((int)ctx->ax != 1 || d.outlen == 0 || d.outlen > MAX_SECRET)
        return 0;
    emit_secret(d.ssl, d.fd, d.which, d.out, d.outlen);
    return 0;
}
