/* The fast lane: decides a request whose shape the engine has already planned, without Python.
 *
 * A *shape* is what the client software sends apart from per-request details: the method, HTTP
 * version, scheme, header names in arrival order and the values of every header except a few
 * that change per request (cookie, referer, x-forwarded-for, ...). A *plan* is what the Python
 * engine concluded for one (shape, client address, route group): the static signals' evidence,
 * the verdict while the windows are quiet, and the window rows the traffic signal observes.
 *
 * Per request this file: scans the ASGI headers into the shape, resolves the client address
 * (trusted proxies), reads the session cookie, finds the route group, looks the plan up, fills
 * the plan's per-request holes (time, product id, session), calls the window kernel through its
 * Numba C entry point and checks the plan's triggers (the thresholds at which the traffic signal
 * would speak). Quiet: the plan is the answer. Anything else - an unusual request, a plan not
 * yet made, a trigger - is handed back to Python, which stays the reference for every verdict.
 * With the windows in a shared store (Redis) the kernel cannot run here: decide() hands the holes
 * to Python, which has the store observe the plan's observations, and conclude() goes on from
 * the store's answers exactly as from the kernel's.
 *
 * Nothing a client sends raises here: what this file does not handle goes to the Python path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include "structmember.h" /* T_OBJECT_EX, READONLY: the Decision's slots */
#ifdef __linux__
#include <sys/mman.h>
#endif

#define MAX_HEADERS 64
#define SHAPE_MAX 8192
#define MAX_ROWS 8
#define MAX_TRIGGERS 16
#define MAX_ATOMS 4
#define MAX_GROUPS 64
#define MAX_NAMES 32
#define MAX_TRUSTED 64
#define IP_MAX 46
#define WAYS 4
#define MAX_HOPS 32
#define COOKIE_SOFT_LIMIT 8192
#define MAX_COOKIE_PARTS 64
#define MAX_SESSION 128
#define MAX_PATH 2048
#define VALUE_FREE_MARK 0xFFFF
#define MAX_BOUNDS 16
/* The fields of shieldware.decision.Decision, in the order the lane is given their slots. */
enum { F_REF, F_VERDICT, F_SCORE, F_REASONS, F_GROUP, F_TIME, F_CLIENT_IP, F_METHOD, F_PATH, F_MODE, F_RULE,
       F_RETRY_AFTER, F_USER_AGENT, F_EXTRA, F_REPORTER, F_LINES, N_FIELDS };
/* The plan attributes a decision copies, in field order (NULL: the request supplies it). */
static const char *PLAN_FIELDS[N_FIELDS] = {NULL, "verdict", "bot_score", "reasons", "route_group", NULL,
                                            "client_ip", "method", NULL, "mode", "rule", "retry_after",
                                            "user_agent", "extra", NULL, NULL};

typedef int64_t (*kernel_fn)(int64_t *, double *, uint8_t *, int64_t, int64_t *, double *, int64_t, double *,
                             int64_t);

/* What happened to each request, for `counts()`: the share of requests the lane answers. */
enum {
    OUT_HIT,       /* planned, windows quiet: answered here */
    OUT_FLAGGED,   /* planned, observed here, a trigger fired: Python assesses the stats */
    OUT_MISS,      /* eligible, but no plan yet: Python decides and makes one */
    OUT_MADE,      /* a hit for a new client, whose plan was made here from its shape's template */
    OUT_OFF,       /* the lane is disarmed (switches changed, refresh due) */
    OUT_SCOPE,     /* not an HTTP scope, or one shaped unusually */
    OUT_PATH,      /* path not plain ASCII, too long, or an internal endpoint */
    OUT_HEADERS,   /* too many, repeated, non-ASCII, upper-case or special headers */
    OUT_CLIENT,    /* client address the lane does not resolve (malformed forwarding, ...) */
    OUT_COOKIE,    /* malformed, oversized or lane-excluded cookies */
    OUT_RULE,      /* a policy rule's path matched: Python evaluates the rule */
    OUT_BUSY,      /* the window table was busy in another thread */
    N_OUTCOMES
};
static const char *OUTCOME_NAMES[N_OUTCOMES] = {"hit", "flagged", "miss", "made", "off", "scope", "path",
                                                "headers", "client", "cookie", "rule", "busy"};

enum { OP_GE, OP_LE, OP_GT, OP_LT, OP_INT_GE, OP_CV_LT, OP_PRODUCT_GE, N_OPS };

/* shieldware.facts.CLIENT_IP_HEADERS, in its order */
enum { CLIENT_XFF, CLIENT_FORWARDED, CLIENT_REAL_IP };

typedef struct GlobSet_ GlobSet;

typedef struct {
    int row, field, op, field2;
    double value;
} Atom;

typedef struct {
    int n_atoms;
    Atom atoms[MAX_ATOMS];
} Trigger;

typedef struct {
    Py_ssize_t len;
    char bytes[40];
} Name;

/* Header names asked "is this one of them?" for every header of every request: first[s] is
 * 1 + the first name whose name_slot() is s (0: none), next[i] 1 + the next name in i's slot, so
 * a name is compared with the one or two that could be it, not with the whole list. */
typedef struct {
    Name names[MAX_NAMES];
    uint8_t first[64], next[MAX_NAMES];
} NameSet;

#define MAX_METHODS 8

typedef struct {
    PyObject *methods; /* frozenset of str, or NULL for every method */
    /* the same names as bytes, compared without hashing the request's method (a new str each
     * time); n_methods -1: a set these cannot hold, asked as a set */
    int n_methods;
    Name method_names[MAX_METHODS];
    GlobSet *globs;
    int n_triggers;
    Trigger triggers[MAX_TRIGGERS];
} Group;

typedef struct {
    uint64_t hash; /* 0: empty */
    uint32_t gen;
    Py_ssize_t len;
    char *bytes;
} ShapeSlot;

typedef struct {
    uint64_t hash; /* 0: empty */
    uint32_t shape_slot, shape_gen;
    int group;
    int ip_len;
    char ip[IP_MAX];
    PyObject *plan;
    PyObject *fields[N_FIELDS]; /* the plan's values for the decision fields it fixes */
    int plain;                  /* an allow nobody logs: the decision goes straight to the app */
    /* for the app: ((b"x-shield-score", ...), (b"x-shield-verdict", ...), the same as head lines followed by
     * b"x-shield-ref: ", which a request's reference completes) */
    PyObject *shield_headers;
    uint64_t hits;              /* decisions made from this plan since the last drain() */
    GlobSet *rule_globs; /* paths of rules Python must evaluate, or NULL */
    int n_rows, pid_row, session_row, step_row;
    int64_t pid_seen, no_session_hits, step_seen;
    int64_t *ints;  /* n_rows * ev_int_width, then the floats in the same allocation */
    double *floats;
} PlanSlot;

#define MAX_PARTS 4
#define MAX_EXCLUDED 16
enum { PART_ADDRESS, PART_PREFIX };

/* How a window key is spelled for an address: `kind` and the key's parts, literal text or the
 * address or its network prefix (shieldware.fastlane.plan.KeyRecipe). */
typedef struct {
    int row;
    PyObject *kind;
    int n_parts;
    PyObject *parts[MAX_PARTS]; /* str: literal; int: PART_ADDRESS or PART_PREFIX */
} Recipe;

/* A plan for every plain address of one shape and route group: the lane makes an address's
 * plan from it on first sight, spelling the window keys from the recipes. */
typedef struct {
    uint64_t hash; /* 0: empty */
    uint32_t shape_slot, shape_gen;
    int group;
    PlanSlot proto; /* its key fields unused; client_ip comes from the address */
    int n_recipes, n_items;
    Recipe recipes[MAX_ROWS];
    int item_rows[MAX_ROWS], item_cols[MAX_ROWS]; /* columns that take the address as an item */
    int n_excluded, excluded_v6;                  /* addresses a rule of the policy may name */
    uint32_t excluded_net[MAX_EXCLUDED], excluded_mask[MAX_EXCLUDED];
} Template;

/* A client address as the lane reads it: its canonical text and, for IPv4, its value. */
typedef struct {
    char text[IP_MAX];
    int len;
    int v4;
    uint32_t value;
} Address;

typedef struct {
    PyObject_HEAD
    PyObject *weakrefs; /* the metrics' tally refers to the lane weakly */
    /* route groups */
    int n_groups, default_group;
    Group groups[MAX_GROUPS];
    /* headers */
    NameSet value_free, bail_names;
    int n_bail_prefixes;
    Name bail_prefixes[MAX_NAMES];
    uint8_t bail_prefix_first[256]; /* 1 for a byte some bail prefix starts with (every byte for "") */
    PyObject *bail_paths;       /* the middleware's endpoints: a dict keyed by path */
    Py_ssize_t bail_paths_size; /* its size when bail_lengths was made (-1: never) */
    uint64_t bail_lengths;      /* bit (length & 63) of every endpoint path: most paths skip the dict */
    PyObject *bail_path_prefix; /* str */
    const char *prefix;         /* its UTF-8 bytes */
    Py_ssize_t prefix_len;
    /* client address: the header the trusted proxies write it into (CLIENT_*) */
    int has_trusted, n_trusted, client_header;
    uint32_t trusted_net[MAX_TRUSTED], trusted_mask[MAX_TRUSTED];
    PyObject *trusts, *normalise;
    /* cookies */
    int n_session_names, n_absent_names;
    Name session_names[MAX_NAMES], absent_names[MAX_NAMES];
    /* windows */
    kernel_fn kernel;
    int64_t *keys;
    double *state;
    uint8_t *registers;
    int64_t capacity;
    PyObject *lock, *lock_locked, *table; /* lock_locked: the lock's bound locked() */
    int ev_int_width, ev_float_width, out_width, col_item, col_flags, col_step, col_time, out_follows;
    int64_t max_step;
    /* plans */
    ShapeSlot *shapes;
    PlanSlot *plans;
    uint32_t shape_buckets, plan_buckets; /* powers of two; WAYS slots each */
    Template *templates;
    uint32_t template_buckets;
    uint8_t *template_next;
    PyObject *address_cb; /* address(ip) -> its network prefix when plain, else None */
    uint8_t *shape_next, *plan_next;      /* round-robin victim per bucket */
    int plans_mapped, shapes_mapped, templates_mapped; /* how table_alloc() got each table */
    uint64_t seed;
    /* the last peer read_peer() read: its text, and what it made of it (last_peer_len -1: none yet) */
    char last_peer_text[64];
    Py_ssize_t last_peer_len;
    Address last_peer;
    int last_peer_trusted;
    /* windows in a shared store (Redis): decide() hands a planned request's holes to Python, which
     * observes them in the store and gives the answers to conclude() */
    int remote;
    /* switches */
    int armed;
    double refresh_due;
    int busy; /* inside decide() or install(): a Python callback let another thread in */
    /* per-request scratch */
    char shape[SHAPE_MAX];
    int64_t ev_int[MAX_ROWS * 8];
    double ev_float[MAX_ROWS * 8];
    double out[MAX_ROWS * 64];
    uint64_t counts[N_OUTCOMES];
    /* decisions the lane makes */
    PyTypeObject *decision_type;
    Py_ssize_t offsets[N_FIELDS]; /* where each field's slot sits in a Decision */
    PyObject *ref_counter, *ref_tag;
    PyObject *reporter; /* the middleware's report hook, every decision's `reporter` */
    PyObject *retired; /* [(plan, hits)] of plans replaced since the last drain() */
    int n_bounds;
    double bounds[MAX_BOUNDS];
    uint64_t latency[MAX_BOUNDS + 1];
    double latency_sum;
    /* the middleware's front door (set_front, handle): the app, the clock, the Python rest, the
     * hearing, the statuses heard of, and the outcome headers each route group watches (a tuple) */
    PyObject *front_app, *front_clock, *front_rest, *front_hear, *front_hear_on, *front_watched, *front_rearm;
    int front_wall; /* front_clock is time.time: read it here, with no call and no float for most requests */
    int front_lines; /* the app writes the X-Shield-* lines itself (decision.header_lines), none in its scope */
    int front_in_place; /* the app gets the server's own scope and state (set_front's scope_in_place) */
    int fronting;       /* inside handle(): app_scope() may change the server's scope in place */
    PyObject *front_decision; /* borrowed: the decision in the app scope decide() just returned */
    int front_group;          /* and that request's route group */
    uint64_t served_ahead;    /* requests handle() served with an answer decide_ahead() left */
} Lane;

static PyObject *S_type, *S_http, *S_websocket, *S_path, *S_method, *S_headers, *S_client, *S_scheme, *S_http_version,
    *S_evictions, *S_state, *S_shield, *S_ref_header, *S_ahead;

/* ---- small helpers ------------------------------------------------------------------------- */

/* The plan, shape and template tables, zeroed: tens of MB, each request reading one slot at
 * random. On Linux they are mapped and offered 2 MiB pages (transparent huge pages, which the
 * kernel grants in its "always" and "madvise" modes): a slot then costs at most a cache miss,
 * not a page-table walk as well. Elsewhere, and if mapping fails, the Python allocator's. */
static void *table_alloc(size_t count, size_t size, int *mapped) {
    *mapped = 0;
#ifdef __linux__
    size_t bytes = count * size;
    void *table = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (table != MAP_FAILED) {
#ifdef MADV_HUGEPAGE
        (void)madvise(table, bytes, MADV_HUGEPAGE); /* only advice: refused, the table still works */
#endif
        *mapped = 1;
        return table;
    }
#endif
    return PyMem_Calloc(count, size);
}

static void table_free(void *table, size_t count, size_t size, int mapped) {
    if (table == NULL) return;
#ifdef __linux__
    if (mapped) {
        munmap(table, count * size);
        return;
    }
#endif
    PyMem_Free(table);
}

/* str.strip()'s whitespace, for ASCII: the lane never sees other bytes in the values it strips. */
static inline int py_space(unsigned char c) { return (c >= 9 && c <= 13) || (c >= 28 && c <= 32); }

static uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* A piece of n < 8 bytes in one word, for tests that judge each byte on its own (and for hashing),
 * without reading past it or calling the library's memcpy (which a length the compiler does not
 * know costs): for n >= 4 its first and last four bytes (overlapping), else its first, middle and
 * last byte over `fill`'s upper five. Every byte of the piece is in the word at least once. When
 * `out` is given the piece is copied there too, by the same loads. */
static inline uint64_t short_word(const char *p, Py_ssize_t n, uint64_t fill, char *out) {
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        if (out != NULL) {
            memcpy(out, &a, 4);
            memcpy(out + n - 4, &b, 4);
        }
        return (uint64_t)a | ((uint64_t)b << 32);
    }
    if (n == 0) return fill;
    unsigned char first = (unsigned char)p[0], middle = (unsigned char)p[n / 2], last = (unsigned char)p[n - 1];
    if (out != NULL) {
        out[0] = (char)first;
        out[n / 2] = (char)middle;
        out[n - 1] = (char)last;
    }
    return (fill & ~0xFFFFFFULL) | first | ((uint64_t)middle << 8) | ((uint64_t)last << 16);
}

/* A seeded 64-bit hash for table placement: one multiply per word, a full mix at the end.
 * Equality is always checked byte for byte, so a collision costs a slot, never a wrong plan. */
static uint64_t hash_bytes(uint64_t seed, const char *data, Py_ssize_t len) {
    uint64_t h = seed ^ ((uint64_t)len * 0x9e3779b97f4a7c15ULL);
    Py_ssize_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t chunk;
        memcpy(&chunk, data + i, 8);
        h = (h ^ chunk) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
    }
    if (i < len) { /* the last eight bytes, overlapping the words before, or a short piece whole */
        uint64_t chunk;
        if (len >= 8)
            memcpy(&chunk, data + len - 8, 8);
        else
            chunk = short_word(data, len, 0, NULL);
        h = (h ^ chunk ^ 0xa5a5a5a5a5a5a5a5ULL) * 0x9e3779b97f4a7c15ULL;
    }
    h = mix(h);
    return h ? h : 1;
}

/* A word's bytes >= 0x7f (DEL or not ASCII) have their top bit set in this: a byte below 0x7f plus
 * one stays below 0x80 (a carry only leaves a byte of 0xff, which is caught itself). */
static inline uint64_t high_bytes(uint64_t w) { return ((w + 0x0101010101010101ULL) | w) & 0x8080808080808080ULL; }

/* Any byte >= 0x7f? A word at a time; the last bytes as the last word (overlapping the one before). */
static int has_high_byte(const char *data, Py_ssize_t len) {
    if (len < 8) return high_bytes(short_word(data, len, 0, NULL)) != 0;
    uint64_t w, high = 0;
    for (Py_ssize_t i = 0; i + 8 <= len; i += 8) {
        memcpy(&w, data + i, 8);
        high |= high_bytes(w);
    }
    memcpy(&w, data + len - 8, 8);
    return (high | high_bytes(w)) != 0;
}

/* Eight name bytes at once: is any outside what a server hands over for a header name, lower-case
 * printable ASCII without space (0x21-0x7e, no 'A'-'Z')? Each test adds a constant to a byte's
 * low seven bits so that its top bit says "at least c"; the sums stay below 0x100, so no carry
 * crosses into the next byte and every byte is judged on its own. */
#define BYTES_OF(b) (0x0101010101010101ULL * (uint64_t)(b))
#define AT_LEAST(low7, c) (((low7) + BYTES_OF(0x80 - (c))) & BYTES_OF(0x80))
static inline uint64_t name_word_bad(uint64_t w) {
    uint64_t low7 = w & BYTES_OF(0x7f);
    uint64_t tops = BYTES_OF(0x80);
    uint64_t bad = (w & tops)                                     /* not ASCII */
                   | AT_LEAST(low7, 0x7f)                         /* DEL */
                   | (~AT_LEAST(low7, 0x21) & tops)               /* control or space */
                   | (AT_LEAST(low7, 'A') & ~AT_LEAST(low7, 'Z' + 1)); /* upper case */
    return bad;
}


static int copy_names(PyObject *seq, Name *out, int max, const char *what) {
    PyObject *fast = PySequence_Fast(seq, what);
    if (fast == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > max) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "%s: at most %d names", what, max);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyBytes_Check(item) || PyBytes_GET_SIZE(item) >= (Py_ssize_t)sizeof(out[i].bytes)) {
            Py_DECREF(fast);
            PyErr_Format(PyExc_ValueError, "%s: names must be bytes shorter than %d", what,
                         (int)sizeof(out[i].bytes));
            return -1;
        }
        out[i].len = PyBytes_GET_SIZE(item);
        memcpy(out[i].bytes, PyBytes_AS_STRING(item), (size_t)out[i].len);
    }
    Py_DECREF(fast);
    return (int)n;
}

/* One of 64 slots for a (non-empty) header name, from its length and last byte. */
static inline unsigned name_slot(const char *data, Py_ssize_t len) {
    return (unsigned)((len * 7 + (unsigned char)data[len - 1]) & 63);
}

static inline int name_is(const Name *name, const char *data, Py_ssize_t len) {
    return name->len == len && memcmp(name->bytes, data, (size_t)len) == 0;
}

static int in_names(const Name *names, int n, const char *data, Py_ssize_t len) {
    for (int i = 0; i < n; i++)
        if (name_is(&names[i], data, len)) return 1;
    return 0;
}

static int set_names(PyObject *seq, NameSet *set, const char *what) {
    int n = copy_names(seq, set->names, MAX_NAMES, what);
    if (n < 0) return -1;
    memset(set->first, 0, sizeof set->first);
    for (int i = n - 1; i >= 0; i--) { /* backwards: each slot's chain keeps the list's order */
        if (set->names[i].len == 0) continue; /* no header name is empty */
        unsigned slot = name_slot(set->names[i].bytes, set->names[i].len);
        set->next[i] = set->first[slot];
        set->first[slot] = (uint8_t)(i + 1);
    }
    return 0;
}

/* Is the name (whose name_slot() is slot) in the set? Most names are ruled out by first[slot]
 * alone, which callers read before the call. */
static int in_set(const NameSet *set, unsigned slot, const char *data, Py_ssize_t len) {
    for (int i = set->first[slot]; i != 0; i = set->next[i - 1])
        if (name_is(&set->names[i - 1], data, len)) return 1;
    return 0;
}

/* Callers look a name's first byte up in the prefixes' first bytes (set_first_bytes) before the
 * call: it rules out nearly every name, and the loop below cost some 900 instructions a request. */
static int has_prefix(const Name *names, int n, const char *data, Py_ssize_t len) {
    for (int i = 0; i < n; i++)
        if (names[i].len <= len && memcmp(names[i].bytes, data, (size_t)names[i].len) == 0) return 1;
    return 0;
}

static int set_first_bytes(const Name *names, int n, uint8_t first[256]) {
    memset(first, 0, 256);
    for (int i = 0; i < n; i++) {
        if (names[i].len == 0) {
            memset(first, 1, 256);
            break;
        }
        first[(unsigned char)names[i].bytes[0]] = 1;
    }
    return 0;
}

#define LIT(s) (s), (Py_ssize_t)(sizeof(s) - 1)
static inline int bytes_eq(const char *a, Py_ssize_t alen, const char *b, Py_ssize_t blen) {
    return alen == blen && memcmp(a, b, (size_t)alen) == 0;
}

/* ---- globs (route groups and rule paths) ---------------------------------------------------- */

/* The policy's globs: '*' spans any characters (slashes too), '?' is one character, the rest is
 * literal, anchored at both ends; ASCII letters match in either case and the path may carry one
 * trailing slash more: the language shieldware.policy.compile_globs compiles to a regex. Patterns
 * are stored lower-cased, so only the path's bytes are folded here. The lane only matches ASCII
 * paths without line breaks, where the two agree exactly. */
static inline char fold(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c; }

/* `n` bytes of the path equal the lower-cased pattern's, letters in either case. */
static inline int folded_eq(const char *pat, const char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (pat[i] != fold(s[i])) return 0;
    return 1;
}

static int glob_match(const char *pat, Py_ssize_t plen, const char *s, Py_ssize_t slen) {
    Py_ssize_t p = 0, i = 0, star = -1, mark = 0;
    while (i < slen) {
        if (p < plen && pat[p] == '*') { /* remember where to resume if what follows fails */
            star = p++;
            mark = i;
        } else if (p < plen && (pat[p] == '?' || pat[p] == fold(s[i]))) {
            p++;
            i++;
        } else if (star >= 0) { /* let the last star take one character more */
            p = star + 1;
            i = ++mark;
        } else {
            return 0;
        }
    }
    while (p < plen && pat[p] == '*') p++;
    return p == plen;
}

/* Globs compiled once: most are a literal, a prefix ("/static/ *"), a suffix ("*.css") or both
 * around one star, compared byte by byte; the rest go through glob_match. */
enum { GLOB_EXACT, GLOB_PREFIX, GLOB_SUFFIX, GLOB_AROUND, GLOB_GENERAL };

typedef struct {
    int kind;
    Py_ssize_t len, head, tail; /* the pattern's length; literal bytes before and after its star */
    char *text;
} Glob;

struct GlobSet_ {
    Py_ssize_t refs; /* plans made from one template share their rules' globs */
    Py_ssize_t n;
    Glob globs[];
};

static void free_globs(GlobSet *set) {
    if (set == NULL || --set->refs > 0) return;
    for (Py_ssize_t i = 0; i < set->n; i++) PyMem_Free(set->globs[i].text);
    PyMem_Free(set);
}

/* A tuple of str patterns compiled; NULL with an exception set on failure. */
static GlobSet *compile_globs(PyObject *patterns) {
    if (!PyTuple_Check(patterns)) {
        PyErr_SetString(PyExc_TypeError, "globs must be a tuple of str");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(patterns);
    GlobSet *set = PyMem_Calloc(1, sizeof(GlobSet) + (size_t)n * sizeof(Glob));
    if (set == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    set->refs = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len;
        const char *text = PyUnicode_Check(PyTuple_GET_ITEM(patterns, i))
                               ? PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(patterns, i), &len)
                               : NULL;
        if (text == NULL) {
            set->n = i;
            free_globs(set);
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "globs must be a tuple of str");
            return NULL;
        }
        Glob *glob = &set->globs[i];
        glob->text = PyMem_Malloc((size_t)len + 1);
        if (glob->text == NULL) {
            set->n = i;
            free_globs(set);
            PyErr_NoMemory();
            return NULL;
        }
        for (Py_ssize_t k = 0; k < len; k++) glob->text[k] = fold(text[k]);
        glob->len = len;
        set->n = i + 1;
        int stars = 0, questions = 0;
        Py_ssize_t star = -1;
        for (Py_ssize_t k = 0; k < len; k++) {
            if (text[k] == '*') {
                stars++;
                star = k;
            } else if (text[k] == '?') {
                questions++;
            }
        }
        if (questions || stars > 1) {
            glob->kind = GLOB_GENERAL;
        } else if (stars == 0) {
            glob->kind = GLOB_EXACT;
        } else {
            glob->head = star;
            glob->tail = len - star - 1;
            glob->kind = glob->tail == 0 ? GLOB_PREFIX : glob->head == 0 ? GLOB_SUFFIX : GLOB_AROUND;
        }
    }
    return set;
}

static int glob_set_match(const GlobSet *set, const char *path, Py_ssize_t len) {
    for (Py_ssize_t i = 0; i < set->n; i++) {
        const Glob *g = &set->globs[i];
        switch (g->kind) {
        case GLOB_EXACT:
            if (g->len == len && folded_eq(g->text, path, len)) return 1;
            break;
        case GLOB_PREFIX:
            if (g->head <= len && folded_eq(g->text, path, g->head)) return 1;
            break;
        case GLOB_SUFFIX:
            if (g->tail <= len && folded_eq(g->text + 1, path + len - g->tail, g->tail)) return 1;
            break;
        case GLOB_AROUND:
            if (g->head + g->tail <= len && folded_eq(g->text, path, g->head) &&
                folded_eq(g->text + g->head + 1, path + len - g->tail, g->tail))
                return 1;
            break;
        default:
            if (glob_match(g->text, g->len, path, len)) return 1;
        }
    }
    return 0;
}

/* Any glob of the set matches the path, or the path less its one trailing slash. */
static int any_glob(const GlobSet *set, const char *path, Py_ssize_t len) {
    return glob_set_match(set, path, len) || (len > 0 && path[len - 1] == '/' && glob_set_match(set, path, len - 1));
}

/* ---- product ids ---------------------------------------------------------------------------- */

/* The id a product URL ends with, as shieldware.signals.traffic_keys.product_id reads it: the
 * last path segment (one trailing slash ignored) is 1-12 digits, alone or followed by one of
 * "-_." and anything without a slash. -1: none. */
static int64_t product_id(const char *path, Py_ssize_t len) {
    Py_ssize_t end = len;
    if (end > 0 && path[end - 1] == '/') end--;
    Py_ssize_t start = end;
    while (start > 0 && path[start - 1] != '/') start--;
    if (start == 0) return -1; /* no slash before the segment */
    Py_ssize_t i = start;
    int64_t value = 0;
    while (i < end && path[i] >= '0' && path[i] <= '9') {
        if (i - start == 12) return -1;
        value = value * 10 + (path[i] - '0');
        i++;
    }
    if (i == start) return -1;
    if (i < end && path[i] != '-' && path[i] != '_' && path[i] != '.') return -1;
    return value;
}

/* ---- client addresses ----------------------------------------------------------------------- */

/* Dotted-quad IPv4 exactly as ipaddress prints it (no leading zeros); its value in *out. */
static int canonical_ipv4(const char *s, Py_ssize_t len, uint32_t *out) {
    uint32_t value = 0;
    int parts = 0;
    Py_ssize_t i = 0;
    while (parts < 4) {
        Py_ssize_t begin = i;
        unsigned part = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9' && i - begin < 3) part = part * 10 + (unsigned)(s[i++] - '0');
        Py_ssize_t digits = i - begin;
        if (digits == 0 || (digits > 1 && s[begin] == '0') || part > 255) return 0;
        value = (value << 8) | part;
        parts++;
        if (parts < 4) {
            if (i >= len || s[i] != '.') return 0;
            i++;
        }
    }
    if (i != len) return 0;
    *out = value;
    return 1;
}

/* Normalise one address text as shieldware.facts.normalise_ip does: canonical IPv4 here, anything
 * else through the Python function (cached there). 1: done, 0: not an address, -1: error. */
static int normalise(Lane *self, const char *s, Py_ssize_t len, Address *out) {
    Py_ssize_t a = 0, b = len;
    while (a < b && py_space((unsigned char)s[a])) a++;
    while (b > a && py_space((unsigned char)s[b - 1])) b--;
    if (a == b) return 0;
    if (b - a < IP_MAX && canonical_ipv4(s + a, b - a, &out->value)) {
        out->len = (int)(b - a);
        memcpy(out->text, s + a, (size_t)out->len);
        out->v4 = 1;
        return 1;
    }
    PyObject *text = PyUnicode_DecodeLatin1(s, len, NULL);
    if (text == NULL) return -1;
    PyObject *result = PyObject_CallOneArg(self->normalise, text);
    Py_DECREF(text);
    if (result == NULL) return -1;
    if (result == Py_None) {
        Py_DECREF(result);
        return 0;
    }
    Py_ssize_t n;
    const char *norm = PyUnicode_Check(result) ? PyUnicode_AsUTF8AndSize(result, &n) : NULL;
    if (norm == NULL || n >= IP_MAX) {
        Py_DECREF(result);
        PyErr_Clear();
        return 0;
    }
    out->len = (int)n;
    memcpy(out->text, norm, (size_t)n);
    out->v4 = canonical_ipv4(norm, n, &out->value);
    Py_DECREF(result);
    return 1;
}

/* May this address tell us who the client is? 1 / 0, -1 on error. */
static int trusted(Lane *self, const Address *addr) {
    if (!self->has_trusted) return 0;
    if (addr->v4) {
        for (int i = 0; i < self->n_trusted; i++)
            if ((addr->value & self->trusted_mask[i]) == self->trusted_net[i]) return 1;
        return 0;
    }
    PyObject *text = PyUnicode_FromStringAndSize(addr->text, addr->len);
    if (text == NULL) return -1;
    PyObject *answer = PyObject_CallOneArg(self->trusts, text);
    Py_DECREF(text);
    if (answer == NULL) return -1;
    int yes = PyObject_IsTrue(answer);
    Py_DECREF(answer);
    return yes;
}

typedef struct {
    const char *data;
    Py_ssize_t len;
} Span;

/* shieldware.facts.resolve_client_ip for an X-Forwarded-For or X-Real-IP chain (`chain`: the header
 * the trusted proxies write, NULL when absent): walk it right to left while the hop is a trusted
 * proxy. 1: resolved into *client, 0: send the request to Python (it would note a malformed hop). */
static int resolve_client(Lane *self, const Address *peer, int peer_trusted, Span chain, Address *client) {
    *client = *peer;
    if (!peer_trusted) return 1;
    Span hops[MAX_HOPS];
    int n = 0, total = 0;
    if (chain.data != NULL) {
        /* [hop for hop in chain.split(",") if hop.strip()], the last MAX_HOPS of them */
        Py_ssize_t begin = 0;
        for (Py_ssize_t i = 0; i <= chain.len; i++) {
            if (i == chain.len || chain.data[i] == ',') {
                Py_ssize_t a = begin;
                while (a < i && py_space((unsigned char)chain.data[a])) a++;
                if (a < i) {
                    hops[total % MAX_HOPS] = (Span){chain.data + begin, i - begin};
                    total++;
                }
                begin = i + 1;
            }
        }
    }
    n = total < MAX_HOPS ? total : MAX_HOPS;
    int first = total - n; /* index (in the ring) of the leftmost kept hop */
    for (int left = n - 1; left >= 0; left--) {
        Span hop = hops[(first + left) % MAX_HOPS];
        Address ip;
        int ok = normalise(self, hop.data, hop.len, &ip);
        if (ok <= 0) {
            if (ok < 0) PyErr_Clear();
            return 0; /* Python notes forwarded.bad_address */
        }
        *client = ip;
        if (left == 0) break;
        int t = trusted(self, &ip);
        if (t < 0) {
            PyErr_Clear();
            return 0;
        }
        if (!t) break;
    }
    return 1;
}

/* ---- cookies -------------------------------------------------------------------------------- */

/* shieldware.facts.parse_cookies, reduced to what the lane needs: whether the header would be
 * noted (malformed, oversized, too many: 0 is returned, Python takes it), whether a cookie the
 * lane must not see is present (0 too), and the first non-empty session cookie's value. */
static int read_cookies(Lane *self, Span raw, Span *session) {
    session->data = NULL;
    session->len = 0;
    if (raw.len > COOKIE_SOFT_LIMIT) return 0;
    Span first[MAX_NAMES]; /* each session cookie's first value (the first of a name wins) */
    for (int s = 0; s < self->n_session_names; s++) first[s].data = NULL;
    int valid = 0;
    Py_ssize_t begin = 0;
    for (Py_ssize_t i = 0; i <= raw.len; i++) {
        if (i < raw.len && raw.data[i] != ';') continue;
        const char *part = raw.data + begin;
        Py_ssize_t plen = i - begin;
        begin = i + 1;
        const char *eq = memchr(part, '=', (size_t)plen);
        Py_ssize_t a = 0, b = eq ? eq - part : plen;
        while (a < b && py_space((unsigned char)part[a])) a++;
        while (b > a && py_space((unsigned char)part[b - 1])) b--;
        if (eq == NULL || a == b) {
            Py_ssize_t k = 0;
            while (k < plen && py_space((unsigned char)part[k])) k++;
            if (k < plen) return 0; /* cookie.malformed */
            continue;
        }
        /* Python notes cookie.too_many past 64 distinct names; past 64 pairs, let it decide. */
        if (++valid > MAX_COOKIE_PARTS) return 0;
        const char *name = part + a;
        Py_ssize_t nlen = b - a;
        if (in_names(self->absent_names, self->n_absent_names, name, nlen)) return 0;
        for (int s = 0; s < self->n_session_names; s++) {
            if (first[s].data != NULL || !name_is(&self->session_names[s], name, nlen)) continue;
            const char *v = eq + 1;
            Py_ssize_t vlen = plen - (v - part);
            Py_ssize_t va = 0, vb = vlen;
            while (va < vb && py_space((unsigned char)v[va])) va++;
            while (vb > va && py_space((unsigned char)v[vb - 1])) vb--;
            if (vb - va >= 2 && v[va] == '"' && v[vb - 1] == '"') {
                va++;
                vb--;
            }
            first[s] = (Span){v + va, vb - va};
        }
    }
    /* The traffic signal takes the first session cookie, in its order, whose value is not empty. */
    for (int s = 0; s < self->n_session_names; s++)
        if (first[s].data != NULL && first[s].len > 0) {
            *session = first[s];
            break;
        }
    return 1;
}

/* ---- scope scanning ------------------------------------------------------------------------- */

typedef struct {
    Py_ssize_t shape_len;
    PyObject *method, *path;
    const char *path_data;
    Py_ssize_t path_len;
    int group;
    Address client;
    Span session;
    PyObject *headers; /* the scope's, a list or tuple (borrowed) */
    int outcome;       /* -1 while eligible, else the OUT_* reason to hand over */
} Scan;

/* The shape's pieces: two bytes of length, then the bytes. */
static int append(Lane *self, Py_ssize_t *at, const char *data, Py_ssize_t len) {
    if (len > 0xFFFE || *at + 2 + len > SHAPE_MAX) return 0;
    self->shape[(*at)++] = (char)(len & 0xFF);
    self->shape[(*at)++] = (char)(len >> 8);
    memcpy(self->shape + *at, data, (size_t)len);
    *at += len;
    return 1;
}

/* Copy a piece to out a word at a time, the last bytes as the last word (overlapping the one
 * before), a piece shorter than a word as short_word copies it: no call to the library's memcpy
 * with a length the compiler does not know. */
static inline void copy_piece(char *out, const char *data, Py_ssize_t len) {
    if (len < 8) {
        short_word(data, len, 0, out);
        return;
    }
    uint64_t w;
    Py_ssize_t i = 0;
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, data + i, 8);
        memcpy(out + i, &w, 8);
    }
    if (i < len) {
        memcpy(&w, data + len - 8, 8);
        memcpy(out + len - 8, &w, 8);
    }
}

/* A header name appended (1 to 64 bytes; 0 otherwise). Its bytes are judged later, and only if
 * the shape is new (shape_is_plain): a known shape passed that test when it was planned. */
static int append_name(Lane *self, Py_ssize_t *at, const char *data, Py_ssize_t len) {
    if (len == 0 || len > 64 || *at + 2 + len > SHAPE_MAX) return 0;
    char *out = self->shape + *at;
    out[0] = (char)len;
    out[1] = 0;
    copy_piece(out + 2, data, len);
    *at += 2 + len;
    return 1;
}

/* A header value appended, if it fits (its bytes judged as a name's are). */
static int append_value(Lane *self, Py_ssize_t *at, const char *data, Py_ssize_t len) {
    if (len > 0xFFFE || *at + 2 + len > SHAPE_MAX) return 0;
    char *out = self->shape + *at;
    out[0] = (char)(len & 0xFF);
    out[1] = (char)(len >> 8);
    copy_piece(out + 2, data, len);
    *at += 2 + len;
    return 1;
}

/* Are a shape's header names ones the lane may read (name_word_bad's alphabet) and its values
 * free of bytes >= 0x7f (else Python notes header.non_ascii)? Asked only of a shape the table does
 * not hold: every shape it holds was asked this before it was planned, and a request that matches
 * one byte for byte has the same names and values. The shape: method, version and scheme (a
 * two-byte length and the text each), the peer's trust byte, each header's name (length, 0, the
 * name) and value (two-byte length and the value, or 0xFFFF for a value left out, whose bytes
 * scan_scope judged itself), and the session byte. */
static int shape_is_plain(const char *shape, Py_ssize_t len) {
    Py_ssize_t at = 0;
    for (int piece = 0; piece < 3; piece++) at += 2 + ((unsigned char)shape[at] | (unsigned char)shape[at + 1] << 8);
    at += 1;
    while (at < len - 1) {
        Py_ssize_t name_len = (unsigned char)shape[at];
        const char *name = shape + at + 2;
        uint64_t bad = 0, w;
        if (name_len < 8) {
            bad = name_word_bad(short_word(name, name_len, BYTES_OF('a'), NULL));
        } else {
            for (Py_ssize_t i = 0; i + 8 <= name_len; i += 8) {
                memcpy(&w, name + i, 8);
                bad |= name_word_bad(w);
            }
            memcpy(&w, name + name_len - 8, 8);
            bad |= name_word_bad(w);
        }
        if (bad) return 0;
        at += 2 + name_len;
        Py_ssize_t value_len = (unsigned char)shape[at] | (unsigned char)shape[at + 1] << 8;
        if (value_len == VALUE_FREE_MARK) {
            at += 2;
            continue;
        }
        if (has_high_byte(shape + at + 2, value_len)) return 0;
        at += 2 + value_len;
    }
    return 1;
}

static int append_str(Lane *self, Py_ssize_t *at, PyObject *text) {
    Py_ssize_t len;
    if (text == NULL || !PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text)) return 0;
    const char *data = PyUnicode_AsUTF8AndSize(text, &len);
    return data != NULL && append(self, at, data, len);
}

static int group_of(Lane *self, PyObject *method, const char *path, Py_ssize_t len) {
    for (int g = 0; g < self->n_groups; g++) {
        Group *group = &self->groups[g];
        if (group->globs == NULL) continue;
        if (group->methods != NULL) {
            int in;
            if (group->n_methods >= 0) {
                Py_ssize_t mlen;
                const char *mdata = PyUnicode_AsUTF8AndSize(method, &mlen);
                in = mdata == NULL ? -1 : in_names(group->method_names, group->n_methods, mdata, mlen);
            } else {
                in = PySet_Contains(group->methods, method);
            }
            if (in < 0) {
                PyErr_Clear();
                return -1;
            }
            if (!in) continue;
        }
        if (any_glob(group->globs, path, len)) return g;
    }
    return self->default_group;
}

static PyObject *scope_item(PyObject *scope, PyObject *key) {
    PyObject *value = PyDict_GetItemWithError(scope, key); /* borrowed */
    if (value == NULL) PyErr_Clear();
    return value;
}

/* The connected peer's address from scope["client"] and whether it is a trusted proxy: 1, or 0
 * to hand the request over. Requests come over kept-alive connections, and behind an edge proxy
 * from one address, so the last peer's reading is kept and reused when the text is the same. */
static int read_peer(Lane *self, PyObject *client, Address *peer, int *peer_trusted) {
    PyObject *host = NULL;
    if (client != NULL && PyTuple_CheckExact(client) && PyTuple_GET_SIZE(client) > 0) {
        host = Py_NewRef(PyTuple_GET_ITEM(client, 0));
    } else if (client != NULL && client != Py_None && PySequence_Check(client)) {
        Py_ssize_t n = PySequence_Size(client);
        if (n < 0) {
            PyErr_Clear(); /* read as no peer, as before any item is asked for */
        } else if (n > 0 && (host = PySequence_GetItem(client, 0)) == NULL) {
            PyErr_Clear();
            return 0;
        }
    }
    const char *hd = "0.0.0.0"; /* no peer: as the front door reads it */
    Py_ssize_t hl = 7;
    if (host != NULL) {
        if (!PyUnicode_Check(host) || !PyUnicode_IS_ASCII(host)) {
            Py_DECREF(host);
            return 0;
        }
        hd = (const char *)PyUnicode_1BYTE_DATA(host);
        hl = PyUnicode_GET_LENGTH(host);
    }
    if (self->last_peer_len >= 0 && hl == self->last_peer_len && memcmp(hd, self->last_peer_text, (size_t)hl) == 0) {
        Py_XDECREF(host);
        *peer = self->last_peer;
        *peer_trusted = self->last_peer_trusted;
        return 1;
    }
    int ok = normalise(self, hd, hl, peer);
    Py_XDECREF(host);
    if (ok < 0) {
        PyErr_Clear();
        return 0;
    }
    if (ok == 0) { /* not an address: the front door reads it as none */
        memcpy(peer->text, "0.0.0.0", 7);
        peer->len = 7;
        peer->v4 = 1;
        peer->value = 0;
    }
    *peer_trusted = trusted(self, peer);
    if (*peer_trusted < 0) {
        PyErr_Clear();
        return 0;
    }
    if (hl < (Py_ssize_t)sizeof self->last_peer_text) {
        memcpy(self->last_peer_text, hd, (size_t)hl);
        self->last_peer_len = hl;
        self->last_peer = *peer;
        self->last_peer_trusted = *peer_trusted;
    }
    return 1;
}

/* Could a path of plen bytes, not under the lane's bail prefix, be one of the middleware's
 * endpoints? Asking the dict means hashing the path, a new str each request. Endpoints live
 * under the prefix (checked first, by its bytes) unless configured elsewhere, and the lengths of
 * those elsewhere rule most paths out. The dict is the middleware's own and endpoints are added
 * after the lane is built (the proxy's health and forward-auth paths), so the lengths are read
 * again whenever its size changes. */
static int may_be_endpoint(Lane *self, Py_ssize_t plen) {
    Py_ssize_t size = PyDict_GET_SIZE(self->bail_paths);
    if (size != self->bail_paths_size) {
        uint64_t lengths = 0;
        Py_ssize_t at = 0;
        PyObject *key, *value;
        while (PyDict_Next(self->bail_paths, &at, &key, &value)) {
            if (!PyUnicode_Check(key)) continue; /* never equal to a path */
            if (!PyUnicode_IS_ASCII(key)) {
                lengths = ~0ULL;
                continue;
            }
            Py_ssize_t len = PyUnicode_GET_LENGTH(key);
            const char *text = (const char *)PyUnicode_1BYTE_DATA(key);
            if (len >= self->prefix_len && memcmp(text, self->prefix, (size_t)self->prefix_len) == 0) continue;
            lengths |= 1ULL << (len & 63);
        }
        self->bail_lengths = lengths;
        self->bail_paths_size = size;
    }
    return (int)((self->bail_lengths >> (plen & 63)) & 1);
}

/* Everything the lane reads from a scope; on return scan->outcome is -1 when the request is for
 * the lane, else why it is not. */
static void scan_scope(Lane *self, PyObject *scope, Scan *scan) {
    scan->outcome = OUT_SCOPE;
    if (!PyDict_Check(scope)) return;
    PyObject *type = scope_item(scope, S_type);
    if (type == NULL || !PyUnicode_Check(type) || PyUnicode_Compare(type, S_http) != 0) return;
    PyObject *path = scope_item(scope, S_path);
    PyObject *method = scope_item(scope, S_method);
    PyObject *headers = scope_item(scope, S_headers);
    if (path == NULL || method == NULL || headers == NULL || !PyUnicode_Check(path) || !PyUnicode_Check(method))
        return;
    /* path */
    scan->outcome = OUT_PATH;
    if (!PyUnicode_IS_ASCII(path)) return;
    Py_ssize_t plen;
    const char *pdata = PyUnicode_AsUTF8AndSize(path, &plen);
    if (pdata == NULL || plen == 0 || plen > MAX_PATH) {
        PyErr_Clear();
        return;
    }
    /* Control bytes, and "/." or "//", ';' or '\\' anywhere: Python resolves dot segments, merges
     * slashes, drops path parameters and reads backslashes as slashes before it matches routes
     * (facts.route_path), and the lane's groups must be the same. */
    unsigned char previous = 0;
    for (Py_ssize_t i = 0; i < plen; i++) {
        unsigned char c = (unsigned char)pdata[i];
        if (c < 0x20 || c == 0x7f || c == ';' || c == '\\' || (previous == '/' && (c == '.' || c == '/'))) return;
        previous = c;
    }
    if (plen >= self->prefix_len && memcmp(pdata, self->prefix, (size_t)self->prefix_len) == 0) return;
    if (may_be_endpoint(self, plen)) {
        int endpoint = PyDict_Contains(self->bail_paths, path);
        if (endpoint != 0) {
            PyErr_Clear();
            return;
        }
    }
    scan->path = path;
    scan->method = method;
    scan->path_data = pdata;
    scan->path_len = plen;

    /* headers */
    scan->outcome = OUT_SCOPE;
    if (!PyList_Check(headers) && !PyTuple_Check(headers)) return;
    PyObject *seq = headers;
    scan->headers = headers;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    scan->outcome = OUT_HEADERS;
    if (n > MAX_HEADERS) return;
    Py_ssize_t at = 0;
    if (!append_str(self, &at, method)) return;
    if (!append_str(self, &at, scope_item(scope, S_http_version))) return;
    if (!append_str(self, &at, scope_item(scope, S_scheme))) return;
    Py_ssize_t trust_at = at; /* the peer's trust goes here once known */
    if (at + 1 > SHAPE_MAX) return;
    at += 1;
    Span cookie = {NULL, 0}, xff = {NULL, 0}, real = {NULL, 0};
    int forwarded = 0;
    uint64_t seen_mask = 0;
    Span seen_names[MAX_HEADERS];
    unsigned char seen_slots[MAX_HEADERS];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *name, *value;
        if (PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2) {
            name = PyTuple_GET_ITEM(pair, 0);
            value = PyTuple_GET_ITEM(pair, 1);
        } else if (PyList_Check(pair) && PyList_GET_SIZE(pair) == 2) {
            name = PyList_GET_ITEM(pair, 0);
            value = PyList_GET_ITEM(pair, 1);
        } else {
            return;
        }
        if (!PyBytes_Check(name) || !PyBytes_Check(value)) return;
        const char *nd = PyBytes_AS_STRING(name), *vd = PyBytes_AS_STRING(value);
        Py_ssize_t nl = PyBytes_GET_SIZE(name), vl = PyBytes_GET_SIZE(value);
        if (nl == 0) return; /* the rest of the name is checked as it is appended */
        /* A repeated name is joined by Python; the names' bit mask finds the few worth comparing. */
        unsigned slot = name_slot(nd, nl);
        uint64_t bit = 1ULL << slot;
        if (seen_mask & bit)
            for (Py_ssize_t k = 0; k < i; k++)
                if (seen_slots[k] == slot && bytes_eq(seen_names[k].data, seen_names[k].len, nd, nl)) return;
        seen_mask |= bit;
        seen_names[i] = (Span){nd, nl};
        seen_slots[i] = (unsigned char)slot;
        if ((self->bail_names.first[slot] && in_set(&self->bail_names, slot, nd, nl)) ||
            (self->bail_prefix_first[(unsigned char)nd[0]] &&
             has_prefix(self->bail_prefixes, self->n_bail_prefixes, nd, nl)))
            return;
        if (nl == 6 && bytes_eq(nd, nl, LIT("cookie")))
            cookie = (Span){vd, vl};
        else if (nl == 15 && bytes_eq(nd, nl, LIT("x-forwarded-for")))
            xff = (Span){vd, vl};
        else if (nl == 9 && bytes_eq(nd, nl, LIT("x-real-ip")))
            real = (Span){vd, vl};
        else if (nl == 9 && bytes_eq(nd, nl, LIT("forwarded")))
            forwarded = 1;
        if (!append_name(self, &at, nd, nl)) return;
        if (self->value_free.first[slot] && in_set(&self->value_free, slot, nd, nl)) {
            if (has_high_byte(vd, vl)) return; /* Python notes header.non_ascii */
            if (at + 2 > SHAPE_MAX) return;
            self->shape[at++] = (char)0xFF;
            self->shape[at++] = (char)0xFF;
        } else if (!append_value(self, &at, vd, vl)) {
            return;
        }
    }

    /* the client's address */
    scan->outcome = OUT_CLIENT;
    Address peer;
    int peer_trusted;
    if (!read_peer(self, scope_item(scope, S_client), &peer, &peer_trusted)) return;
    /* Only the header the trusted proxies write names the client: a client's own copies of the
     * others pass through them untouched. */
    Span chain = {NULL, 0};
    if (self->client_header == CLIENT_XFF)
        chain = xff;
    else if (self->client_header == CLIENT_REAL_IP)
        chain = real;
    else if (peer_trusted && forwarded)
        return; /* the Forwarded chain is Python's to read */
    if (!resolve_client(self, &peer, peer_trusted, chain, &scan->client)) return;
    self->shape[trust_at] = (char)(peer_trusted ? 1 : 0);

    /* cookies */
    scan->outcome = OUT_COOKIE;
    scan->session = (Span){NULL, 0};
    if (cookie.data != NULL && cookie.len > 0 && !read_cookies(self, cookie, &scan->session)) return;
    /* Whether a session came is part of the shape: product pages without one are watched for a
     * walk over rotating addresses (the traffic signal's stack row), so their plans have a row
     * more than the same client's pages with its session. */
    if (at + 1 > SHAPE_MAX) return;
    self->shape[at++] = (char)(scan->session.data != NULL ? 1 : 0);
    scan->shape_len = at;

    /* route group */
    scan->outcome = OUT_PATH;
    scan->group = group_of(self, method, pdata, plen);
    if (scan->group < 0) return;
    scan->outcome = -1;
}

/* ---- shape and plan tables ------------------------------------------------------------------ */

static ShapeSlot *find_shape(Lane *self, uint64_t h, const char *data, Py_ssize_t len, uint32_t *index) {
    uint32_t base = (uint32_t)(h & (self->shape_buckets - 1)) * WAYS;
    for (int w = 0; w < WAYS; w++) {
        ShapeSlot *slot = &self->shapes[base + w];
        if (slot->hash == h && slot->len == len && memcmp(slot->bytes, data, (size_t)len) == 0) {
            *index = base + w;
            return slot;
        }
    }
    return NULL;
}

static uint64_t plan_hash(Lane *self, uint32_t shape_index, uint32_t gen, int group, const char *ip, int ip_len) {
    uint64_t h = hash_bytes(self->seed, ip, ip_len);
    h = mix(h ^ ((uint64_t)shape_index << 32) ^ gen ^ ((uint64_t)group << 20));
    return h ? h : 1;
}

static PlanSlot *find_plan(Lane *self, uint64_t h, uint32_t shape_index, uint32_t gen, int group, const char *ip,
                           int ip_len) {
    uint32_t base = (uint32_t)(h & (self->plan_buckets - 1)) * WAYS;
    for (int w = 0; w < WAYS; w++) {
        PlanSlot *slot = &self->plans[base + w];
        if (slot->hash == h && slot->shape_slot == shape_index && slot->shape_gen == gen && slot->group == group &&
            slot->ip_len == ip_len && memcmp(slot->ip, ip, (size_t)ip_len) == 0)
            return slot;
    }
    return NULL;
}

static void empty_plan(PlanSlot *slot) {
    slot->hash = 0;
    for (int f = 0; f < N_FIELDS; f++) Py_CLEAR(slot->fields[f]);
    Py_CLEAR(slot->shield_headers);
    Py_CLEAR(slot->plan);
    free_globs(slot->rule_globs);
    slot->rule_globs = NULL;
    PyMem_Free(slot->ints);
    slot->ints = NULL;
    slot->floats = NULL;
}

/* A plan leaves its slot: its decisions not yet drained go to the retired list first. */
static int retire_plan(Lane *self, PlanSlot *slot) {
    if (slot->hits > 0 && slot->plan != NULL) {
        PyObject *entry = Py_BuildValue("(OK)", slot->plan, (unsigned long long)slot->hits);
        if (entry == NULL || PyList_Append(self->retired, entry) < 0) {
            Py_XDECREF(entry);
            return -1;
        }
        Py_DECREF(entry);
    }
    slot->hits = 0;
    empty_plan(slot);
    return 0;
}

static void empty_template(Template *t);

/* A slot that never held anything, or was emptied and holds nothing now. Asked before clearing
 * one: the tables are tens of MB of mapped memory, most of it never touched, and writing its zeros
 * again would make the kernel hand over every page (about 70 ms a clear, here; a lane is cleared
 * when the proxy reloads its policy and when the address databases change under it). */
static int plan_blank(const PlanSlot *slot) {
    if (slot->hash != 0 || slot->hits != 0 || slot->plan != NULL || slot->shield_headers != NULL ||
        slot->rule_globs != NULL || slot->ints != NULL)
        return 0;
    for (int f = 0; f < N_FIELDS; f++)
        if (slot->fields[f] != NULL) return 0;
    return 1;
}

static int clear_tables(Lane *self) {
    if (self->plans != NULL)
        for (uint32_t i = 0; i < self->plan_buckets * WAYS; i++)
            if (!plan_blank(&self->plans[i]) && retire_plan(self, &self->plans[i]) < 0) return -1;
    if (self->templates != NULL)
        for (uint32_t i = 0; i < self->template_buckets * WAYS; i++) {
            Template *t = &self->templates[i];
            if (t->hash != 0 || t->n_recipes != 0 || !plan_blank(&t->proto)) empty_template(t);
        }
    if (self->shapes != NULL)
        for (uint32_t i = 0; i < self->shape_buckets * WAYS; i++) {
            if (self->shapes[i].gen == 0 && self->shapes[i].bytes == NULL) continue; /* never held a shape */
            PyMem_Free(self->shapes[i].bytes);
            self->shapes[i].bytes = NULL;
            self->shapes[i].hash = 0;
            self->shapes[i].len = 0;
            self->shapes[i].gen++; /* plans of the old shape can never match again */
        }
    return 0;
}

/* ---- triggers ------------------------------------------------------------------------------- */

static int atom_holds(const Atom *atom, const double *out, int width) {
    double v = out[atom->row * width + atom->field];
    switch (atom->op) {
    case OP_GE: return v >= atom->value;
    case OP_LE: return v <= atom->value;
    case OP_GT: return v > atom->value;
    case OP_LT: return v < atom->value;
    case OP_INT_GE: {
        /* int(v) in Python truncates toward zero; v is a count, finite */
        double t = v < 0 ? -(double)(int64_t)(-v) : (double)(int64_t)v;
        return t >= atom->value;
    }
    case OP_CV_LT: {
        double std = out[atom->row * width + atom->field2];
        return v > 0.0 && std / v < atom->value;
    }
    case OP_PRODUCT_GE: {
        volatile double product = v * out[atom->row * width + atom->field2]; /* rounded like Python's */
        return product >= atom->value;
    }
    }
    return 1; /* unknown op: assume it fires, Python decides */
}

/* Triggers are a route group's; an atom on a row this request's plan does not have (the traffic
 * signal's last row is there only for requests without cookies) does not hold. The answer has bit t
 * set when trigger t fires: one trigger per finding, so the bits say which findings assess would
 * add (Python holds a flagged client's assessment while the same bits fire). */
static uint32_t fired_triggers(const Group *group, const double *out, int width, int n_rows) {
    uint32_t fired = 0;
    for (int t = 0; t < group->n_triggers; t++) {
        const Trigger *trigger = &group->triggers[t];
        int all = 1;
        for (int a = 0; a < trigger->n_atoms && all; a++)
            all = trigger->atoms[a].row < n_rows && atom_holds(&trigger->atoms[a], out, width);
        fired |= (uint32_t)all << t;
    }
    return fired;
}

/* ---- the Lane type -------------------------------------------------------------------------- */

static int str_hash_item(PyObject *text, int64_t *out) {
    Py_hash_t h = PyObject_Hash(text);
    if (h == -1) return 0;
    *out = h == 0 ? 1 : (int64_t)h;
    return 1;
}

/* hash(str) of ASCII text, as str_hash_item gives it, without making the str: a str of one byte per
 * character hashes exactly its bytes (CPython's unicode_hash), and the pid and session texts are ASCII. */
static void ascii_hash_item(const char *data, Py_ssize_t len, int64_t *out) {
    Py_hash_t h = _Py_HashBytes(data, len);
    *out = h == 0 ? 1 : (int64_t)h;
}

/* Fill the plan's per-request holes into the scratch rows (nothing here can fail). */
static void fill_rows(Lane *self, PlanSlot *plan, Scan *scan, double now) {
    int iw = self->ev_int_width, fw = self->ev_float_width;
    memcpy(self->ev_int, plan->ints, sizeof(int64_t) * (size_t)(plan->n_rows * iw));
    memcpy(self->ev_float, plan->floats, sizeof(double) * (size_t)(plan->n_rows * fw));
    for (int r = 0; r < plan->n_rows; r++) self->ev_float[r * fw + self->col_time] = now;
    int64_t pid = plan->pid_row >= 0 || plan->step_row >= 0 ? product_id(scan->path_data, scan->path_len) : -1;
    if (pid >= 0 && plan->pid_row >= 0) {
        char digits[24];
        int n = 0;
        for (int64_t rest = pid; n == 0 || rest > 0; rest /= 10) digits[23 - n++] = (char)('0' + rest % 10);
        /* str(pid): no leading zeros */
        ascii_hash_item(digits + 24 - n, n, &self->ev_int[plan->pid_row * iw + self->col_item]);
        self->ev_int[plan->pid_row * iw + self->col_step] = pid < self->max_step ? pid + 1 : 0;
        self->ev_int[plan->pid_row * iw + self->col_flags] |= plan->pid_seen;
    }
    if (pid >= 0 && plan->step_row >= 0) { /* another key that keeps the id as a step (the client software) */
        self->ev_int[plan->step_row * iw + self->col_step] = pid < self->max_step ? pid + 1 : 0;
        self->ev_int[plan->step_row * iw + self->col_flags] |= plan->step_seen;
    }
    if (plan->session_row >= 0) {
        Span s = scan->session;
        if (s.len > 0) {
            /* header values reach here only if ASCII (scan_scope) */
            ascii_hash_item(s.data, s.len < MAX_SESSION ? s.len : MAX_SESSION,
                            &self->ev_int[plan->session_row * iw + self->col_item]);
        } else {
            self->ev_int[plan->session_row * iw + self->col_flags] |= plan->no_session_hits << 8;
        }
    }
}

/* Run the rows through the window kernel, unless the table's lock is held. 1 done, 0 busy, -1 error.
 *
 * The lock keeps two kernel runs off the table at once: Python's runs release the GIL and hold the
 * lock. This one runs with the GIL held from the question to the end, and a thread can take the lock
 * only with the GIL too (or, blocked in acquire(), it wakes holding the lock but runs nothing
 * before it has the GIL back). So a lock nobody holds now stays untaken until this run is done,
 * and asking `locked()` is enough: a tenth of acquire(False) and release(), which parse arguments. */
static int observe(Lane *self, int n_rows) {
    PyObject *held = PyObject_CallNoArgs(self->lock_locked);
    if (held == NULL) return -1;
    int busy = PyObject_IsTrue(held);
    Py_DECREF(held);
    if (busy != 0) return busy < 0 ? -1 : 0;
    int64_t evicted = self->kernel(self->keys, self->state, self->registers, self->capacity, self->ev_int,
                                   self->ev_float, n_rows, self->out, n_rows);
    if (evicted > 0) {
        PyObject *before = PyObject_GetAttr(self->table, S_evictions);
        if (before == NULL) return -1;
        PyObject *more = PyLong_FromLongLong((long long)evicted);
        PyObject *after = more ? PyNumber_Add(before, more) : NULL;
        Py_DECREF(before);
        Py_XDECREF(more);
        if (after == NULL) return -1;
        int failed = PyObject_SetAttr(self->table, S_evictions, after);
        Py_DECREF(after);
        if (failed) return -1;
    }
    return 1;
}

static PyObject *outcome(Lane *self, int which) {
    self->counts[which]++;
    Py_RETURN_NONE;
}

static PyObject *decide(Lane *self, PyObject *scope, double now);
static PyObject *decide_armed(Lane *self, PyObject *scope, double now);
static PyObject *finish(Lane *self, PyObject *scope, Scan *scan, PlanSlot *plan, int made, double now,
                        double started);
static Template *find_template(Lane *self, uint32_t shape_index, uint32_t gen, int group);
static PlanSlot *instantiate(Lane *self, Template *t, Scan *scan, uint32_t shape_index, uint32_t gen);

/* decide(scope, now) -> app scope | None | (0, shape, ip, group) | (1, stats, plan, ip, fired, follows)
 *                       | (2, Decision, follows) | (3, plan, ip, pid, session, made, started):
 * a planned, quiet, allowed request's scope for the app (its decision in the state), a planned
 * decision held back for the middleware (to log, refuse or remember its step), nothing for the
 * lane, a miss, window answers to assess (with the bits of the triggers that fired), or, with the
 * windows in a shared store, a planned request's holes for the store (then conclude()). */
static PyObject *Lane_decide(Lane *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decide(scope, now)");
        return NULL;
    }
    double now = PyFloat_AsDouble(args[1]);
    if (now == -1.0 && PyErr_Occurred()) return NULL;
    return decide_armed(self, args[0], now);
}

/* conclude(scope, now, plan, observed, made, started): with the windows in a shared store, a request
 * decide() answered (3, plan, ip, pid, session, made, started) for, once Python had the store observe
 * the plan's rows: `observed` holds their answers (the doubles of STATS_FIELDS per row, as the
 * kernel's output rows).
 * Answers as decide() does after observing; None when the lane can no longer answer (disarmed, or
 * the plan was replaced while the store answered): Python decides from the same answers then. */
static PyObject *Lane_conclude(Lane *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "conclude(scope, now, plan, observed, made, started)");
        return NULL;
    }
    double now = PyFloat_AsDouble(args[1]);
    if (now == -1.0 && PyErr_Occurred()) return NULL;
    double started = PyFloat_AsDouble(args[5]);
    if (started == -1.0 && PyErr_Occurred()) return NULL;
    Py_buffer observed;
    if (PyObject_GetBuffer(args[3], &observed, PyBUF_SIMPLE) < 0) return NULL;
    int made = PyObject_IsTrue(args[4]);
    PyObject *answer = NULL;
    if (made < 0) goto done;
    if (!self->armed || now >= self->refresh_due) {
        answer = outcome(self, OUT_OFF);
        goto done;
    }
    if (self->busy) {
        answer = outcome(self, OUT_BUSY);
        goto done;
    }
    self->busy = 1;
    Scan scan;
    scan_scope(self, args[0], &scan);
    PlanSlot *plan = NULL;
    if (scan.outcome < 0) {
        uint32_t shape_index = 0;
        uint64_t sh = hash_bytes(self->seed, self->shape, scan.shape_len);
        ShapeSlot *shape = find_shape(self, sh, self->shape, scan.shape_len, &shape_index);
        if (shape != NULL) {
            uint64_t ph = plan_hash(self, shape_index, shape->gen, scan.group, scan.client.text, scan.client.len);
            plan = find_plan(self, ph, shape_index, shape->gen, scan.group, scan.client.text, scan.client.len);
        }
    }
    if (plan == NULL || plan->plan != args[2]) {
        answer = outcome(self, OUT_MISS);
    } else if ((size_t)observed.len != sizeof(double) * (size_t)(plan->n_rows * self->out_width)) {
        PyErr_Format(PyExc_ValueError, "conclude: %zd bytes of answers for %d rows", observed.len, plan->n_rows);
    } else {
        memcpy(self->out, observed.buf, (size_t)observed.len);
        answer = finish(self, args[0], &scan, plan, made, now, started);
    }
    self->busy = 0;
done:
    PyBuffer_Release(&observed);
    return answer;
}

/* set_remote(on): the windows live in a shared store (see Lane_conclude) */
static PyObject *Lane_set_remote(Lane *self, PyObject *on) {
    int remote = PyObject_IsTrue(on);
    if (remote < 0) return NULL;
    self->remote = remote;
    Py_RETURN_NONE;
}

/* decide(), when the lane is armed and not inside another decide() (a Python callback let
 * another thread in); None otherwise. */
static PyObject *decide_armed(Lane *self, PyObject *scope, double now) {
    if (!self->armed || now >= self->refresh_due) return outcome(self, OUT_OFF);
    if (self->busy) return outcome(self, OUT_BUSY);
    self->busy = 1;
    PyObject *answer = decide(self, scope, now);
    self->busy = 0;
    return answer;
}

static PyObject *time_time; /* the time module's time(), which wall_seconds() reads as it does */

/* time.time(), as CPython computes it: CLOCK_REALTIME in nanoseconds, then seconds as a double
 * (whole seconds converted exactly, the rest divided by 1e9), so the lane and a Python call agree. */
static double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    if (t % 1000000000 == 0) return (double)(t / 1000000000);
    return (double)t / 1e9;
}

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The decision's time to decide, into the histogram metrics.py exports (bisect_left buckets). */
static void count_latency(Lane *self, double started) {
    double seconds = monotonic() - started;
    int b = 0;
    while (b < self->n_bounds && seconds > self->bounds[b]) b++;
    self->latency[b]++;
    self->latency_sum += seconds;
}

/* A reference id as shieldware.decision.new_reference writes it, from the same counter. */
static PyObject *new_reference(Lane *self) {
    PyObject *next = PyIter_Next(self->ref_counter);
    if (next == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "the reference counter ended");
        return NULL;
    }
    unsigned long long value = PyLong_AsUnsignedLongLongMask(next) & 0xFFFFFFFULL;
    Py_DECREF(next);
    /* "<tag>-<7 hex digits>", written by hand: formatting it generically costs more than the rest */
    Py_ssize_t tag_len = PyUnicode_GET_LENGTH(self->ref_tag);
    PyObject *ref = PyUnicode_New(tag_len + 8, 127);
    if (ref == NULL) return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(ref);
    memcpy(out, PyUnicode_1BYTE_DATA(self->ref_tag), (size_t)tag_len);
    out[tag_len] = '-';
    for (int i = 7; i >= 1; i--, value >>= 4) out[tag_len + i] = (Py_UCS1)"0123456789abcdef"[value & 0xF];
    return ref;
}

/* A Decision with the plan's fields and this request's reference, time and path, made the way
 * the dataclass would (its slots filled; there is no __post_init__ to run). */
static PyObject *make_decision(Lane *self, PlanSlot *plan, PyObject *path, double now) {
    PyObject *values[N_FIELDS];
    memcpy(values, plan->fields, sizeof values);
    PyObject *ref = new_reference(self);
    if (ref == NULL) return NULL;
    PyObject *time = PyFloat_FromDouble(now);
    PyObject *extra = plan->fields[F_EXTRA] != NULL && PyDict_Check(plan->fields[F_EXTRA])
                          ? PyDict_Copy(plan->fields[F_EXTRA])
                          : PyDict_New();
    PyObject *decision = self->decision_type->tp_alloc(self->decision_type, 0);
    if (time == NULL || extra == NULL || decision == NULL) {
        Py_DECREF(ref);
        Py_XDECREF(time);
        Py_XDECREF(extra);
        Py_XDECREF(decision);
        return NULL;
    }
    values[F_REF] = ref;
    values[F_TIME] = time;
    values[F_PATH] = path;
    values[F_EXTRA] = extra;
    values[F_REPORTER] = self->reporter;
    values[F_LINES] = Py_None; /* app_scope() gives it the lines when the app writes them */
    for (int f = 0; f < N_FIELDS; f++) {
        PyObject **slot = (PyObject **)((char *)decision + self->offsets[f]);
        PyObject *value = values[f];
        /* ref, time and extra are new references handed over; the rest are borrowed */
        *slot = (f == F_REF || f == F_TIME || f == F_EXTRA) ? value : Py_NewRef(value);
    }
    return decision;
}

/* The X-Shield-* lines of a request the app forwards itself: the plan's score and verdict lines and
 * "x-shield-ref: " (in one bytes object), then the reference. */
static PyObject *shield_lines(PlanSlot *plan, PyObject *ref) {
    PyObject *prefix = PyTuple_GET_ITEM(plan->shield_headers, 2);
    Py_ssize_t head = PyBytes_GET_SIZE(prefix), ref_len = PyUnicode_GET_LENGTH(ref);
    PyObject *lines = PyBytes_FromStringAndSize(NULL, head + ref_len + 2);
    if (lines == NULL) return NULL;
    char *out = PyBytes_AS_STRING(lines);
    memcpy(out, PyBytes_AS_STRING(prefix), (size_t)head);
    memcpy(out + head, PyUnicode_1BYTE_DATA(ref), (size_t)ref_len); /* ASCII, as new_reference wrote it */
    memcpy(out + head + ref_len, "\r\n", 2);
    return lines;
}

/* The scope's headers (a list or tuple, as scan_scope found them) and the three X-Shield-* headers,
 * in a list made at its size: no growing it as they are appended. */
static PyObject *headers_with_shield(PyObject *scope_headers, PlanSlot *plan, PyObject *ref) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(scope_headers);
    PyObject **items = PySequence_Fast_ITEMS(scope_headers);
    PyObject *ref_bytes = PyBytes_FromStringAndSize((const char *)PyUnicode_1BYTE_DATA(ref), PyUnicode_GET_LENGTH(ref));
    PyObject *ref_header = ref_bytes != NULL ? PyTuple_New(2) : NULL;
    PyObject *headers = ref_header != NULL ? PyList_New(n + 3) : NULL;
    if (headers == NULL) {
        Py_XDECREF(ref_header);
        Py_XDECREF(ref_bytes);
        return NULL;
    }
    PyTuple_SET_ITEM(ref_header, 0, Py_NewRef(S_ref_header));
    PyTuple_SET_ITEM(ref_header, 1, ref_bytes);
    for (Py_ssize_t i = 0; i < n; i++) PyList_SET_ITEM(headers, i, Py_NewRef(items[i]));
    PyList_SET_ITEM(headers, n, Py_NewRef(PyTuple_GET_ITEM(plan->shield_headers, 0)));
    PyList_SET_ITEM(headers, n + 1, Py_NewRef(PyTuple_GET_ITEM(plan->shield_headers, 1)));
    PyList_SET_ITEM(headers, n + 2, ref_header);
    return headers;
}

/* The state dict the app's scope gets: the server's own when the lane may change it in place, else
 * a copy (a mapping of another kind, or none, becomes a dict of its items). A new reference. */
static PyObject *app_state(PyObject *scope, int in_place) {
    PyObject *state = PyDict_GetItemWithError(scope, S_state);
    if (state != NULL && PyDict_CheckExact(state) && in_place) return Py_NewRef(state);
    if (state != NULL && PyDict_Check(state)) return PyDict_Copy(state);
    if (PyErr_Occurred()) return NULL;
    PyObject *own = PyDict_New();
    if (own != NULL && state != NULL && state != Py_None && PyDict_Update(own, state) < 0) Py_CLEAR(own);
    return own;
}

/* The scope the app sees, with the decision in its state, and the X-Shield-* headers appended to its
 * headers or, when the app writes them itself, their lines in the decision (what
 * ShieldMiddleware._pass does for decisions made in Python). A copy of the server's scope, or the
 * server's scope itself when handle() was told the server reads neither it nor its state back
 * (set_front's scope_in_place: uvicorn makes both for each request): two dict copies saved. */
static PyObject *app_scope(Lane *self, PyObject *scope, PyObject *scope_headers, PyObject *decision, PlanSlot *plan) {
    PyObject *ref = *(PyObject **)((char *)decision + self->offsets[F_REF]);
    int in_place = self->fronting && self->front_in_place;
    PyObject *answer = in_place ? Py_NewRef(scope) : PyDict_Copy(scope);
    if (answer == NULL) return NULL;
    if (self->front_lines) {
        PyObject *lines = shield_lines(plan, ref);
        if (lines == NULL) {
            Py_DECREF(answer);
            return NULL;
        }
        Py_SETREF(*(PyObject **)((char *)decision + self->offsets[F_LINES]), lines);
    } else {
        PyObject *headers = headers_with_shield(scope_headers, plan, ref);
        int failed = headers == NULL || PyDict_SetItem(answer, S_headers, headers) < 0;
        Py_XDECREF(headers);
        if (failed) {
            Py_DECREF(answer);
            return NULL;
        }
    }
    PyObject *state = app_state(scope, in_place);
    if (state == NULL || PyDict_SetItem(state, S_shield, decision) < 0 || PyDict_SetItem(answer, S_state, state) < 0) {
        Py_DECREF(answer);
        Py_XDECREF(state);
        return NULL;
    }
    Py_DECREF(state);
    return answer;
}

static PyObject *decide(Lane *self, PyObject *scope, double now) {
    double started = monotonic();
    Scan scan;
    scan_scope(self, scope, &scan);
    if (scan.outcome >= 0) return outcome(self, scan.outcome);
    uint64_t sh = hash_bytes(self->seed, self->shape, scan.shape_len);
    uint32_t shape_index = 0;
    ShapeSlot *shape = find_shape(self, sh, self->shape, scan.shape_len, &shape_index);
    PlanSlot *plan = NULL;
    int made = 0;
    if (shape != NULL) {
        uint64_t ph = plan_hash(self, shape_index, shape->gen, scan.group, scan.client.text, scan.client.len);
        plan = find_plan(self, ph, shape_index, shape->gen, scan.group, scan.client.text, scan.client.len);
        if (plan == NULL) { /* a new client of a planned shape: its plan from the template, if it has one */
            Template *template = find_template(self, shape_index, shape->gen, scan.group);
            made = template != NULL && (plan = instantiate(self, template, &scan, shape_index, shape->gen)) != NULL;
        }
    }
    if (shape == NULL && !shape_is_plain(self->shape, scan.shape_len)) return outcome(self, OUT_HEADERS);
    if (plan == NULL) {
        self->counts[OUT_MISS]++;
        return Py_BuildValue("(iy#s#i)", 0, self->shape, scan.shape_len, scan.client.text, (Py_ssize_t)scan.client.len,
                             scan.group);
    }
    if (plan->rule_globs != NULL && any_glob(plan->rule_globs, scan.path_data, scan.path_len))
        return outcome(self, OUT_RULE);
    if (plan->n_rows > 0 && self->remote) { /* the store observes: Python asks it, then conclude() */
        int64_t pid = plan->pid_row >= 0 || plan->step_row >= 0 ? product_id(scan.path_data, scan.path_len) : -1;
        /* `started` goes along: the decision's latency includes the store's answer, as on the Python path */
        return Py_BuildValue("(iOs#Ly#id)", 3, plan->plan, scan.client.text, (Py_ssize_t)scan.client.len,
                             (long long)pid, scan.session.len > 0 ? scan.session.data : "",
                             (Py_ssize_t)(scan.session.len > 0 ? scan.session.len : 0), made, started);
    }
    if (plan->n_rows > 0) { /* no rows: the engine runs no window signal */
        fill_rows(self, plan, &scan, now);
        int done = observe(self, plan->n_rows);
        if (done < 0) return NULL;
        if (done == 0) return outcome(self, OUT_BUSY);
    }
    return finish(self, scope, &scan, plan, made, now, started);
}

/* The rest of a decision once the plan's rows were observed (their answers in self->out): the
 * quiet plan's decision, or the answers to assess. */
static PyObject *finish(Lane *self, PyObject *scope, Scan *scan, PlanSlot *plan, int made, double now,
                        double started) {
    int follows = plan->pid_row >= 0 && self->out[plan->pid_row * self->out_width + self->out_follows] > 0.0;
    uint32_t fired = plan->n_rows > 0 ? fired_triggers(&self->groups[scan->group], self->out, self->out_width,
                                                         plan->n_rows) : 0;
    if (fired != 0) {
        self->counts[OUT_FLAGGED]++;
        return Py_BuildValue("(iy#Os#IO)", 1, (const char *)self->out,
                             (Py_ssize_t)(sizeof(double) * (size_t)(plan->n_rows * self->out_width)), plan->plan,
                             scan->client.text, (Py_ssize_t)scan->client.len, (unsigned int)fired,
                             follows ? Py_True : Py_False);
    }
    PyObject *decision = make_decision(self, plan, scan->path, now);
    if (decision == NULL) return NULL;
    self->counts[made ? OUT_MADE : OUT_HIT]++;
    plan->hits++;
    count_latency(self, started);
    if (plan->plain && !follows) { /* straight to the app: its scope, the decision in its state */
        PyObject *answer = app_scope(self, scope, scan->headers, decision, plan);
        self->front_decision = decision; /* held on by the answer's state */
        self->front_group = scan->group;
        Py_DECREF(decision);
        return answer;
    }
    return Py_BuildValue("(iNO)", 2, decision, follows ? Py_True : Py_False);
}

static ShapeSlot *insert_shape(Lane *self, const char *data, Py_ssize_t len, uint32_t *index) {
    uint64_t h = hash_bytes(self->seed, data, len);
    ShapeSlot *slot = find_shape(self, h, data, len, index);
    if (slot != NULL) return slot;
    uint32_t bucket = (uint32_t)(h & (self->shape_buckets - 1));
    uint32_t base = bucket * WAYS;
    int victim = -1;
    for (int w = 0; w < WAYS && victim < 0; w++)
        if (self->shapes[base + w].hash == 0) victim = w;
    if (victim < 0) victim = self->shape_next[bucket]++ % WAYS;
    slot = &self->shapes[base + victim];
    char *copy = PyMem_Malloc((size_t)len);
    if (copy == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, data, (size_t)len);
    PyMem_Free(slot->bytes);
    slot->bytes = copy;
    slot->len = len;
    slot->hash = h;
    slot->gen++; /* plans made for the shape this slot held before are dead now */
    *index = base + (uint32_t)victim;
    return slot;
}

/* Everything of a plan but its key, given by Python: its fields, rows and holes. The slot takes
 * new references; on failure nothing is kept. */
static int fill_body(Lane *self, PlanSlot *body, PyObject *plan, const char *ints, Py_ssize_t ints_len,
                     const char *floats, Py_ssize_t floats_len, int pid_row, long long pid_seen, int session_row,
                     long long no_session_hits, int step_row, long long step_seen, PyObject *rule_globs, int plain,
                     PyObject *shield_headers) {
    int iw = self->ev_int_width, fw = self->ev_float_width;
    if (ints_len % (Py_ssize_t)(sizeof(int64_t) * iw) ||
        floats_len != ints_len / (Py_ssize_t)(sizeof(int64_t) * iw) * (Py_ssize_t)(sizeof(double) * fw)) {
        PyErr_SetString(PyExc_ValueError, "install: rows of inconsistent widths");
        return -1;
    }
    int n_rows = (int)(ints_len / (Py_ssize_t)(sizeof(int64_t) * iw));
    if (n_rows > MAX_ROWS || pid_row >= n_rows || session_row >= n_rows || step_row >= n_rows ||
        (rule_globs != Py_None && !PyTuple_Check(rule_globs)) || PyTuple_GET_SIZE(shield_headers) != 3 ||
        !PyBytes_Check(PyTuple_GET_ITEM(shield_headers, 2))) {
        PyErr_SetString(PyExc_ValueError, "install: rows, holes or headers out of range");
        return -1;
    }
    memset(body, 0, sizeof *body);
    if (rule_globs != Py_None && PyTuple_GET_SIZE(rule_globs) > 0 &&
        (body->rule_globs = compile_globs(rule_globs)) == NULL)
        return -1;
    for (int f = 0; f < N_FIELDS; f++)
        if (PLAN_FIELDS[f] != NULL && (body->fields[f] = PyObject_GetAttrString(plan, PLAN_FIELDS[f])) == NULL) {
            empty_plan(body);
            return -1;
        }
    void *rows = PyMem_Malloc((size_t)ints_len + (size_t)floats_len);
    if (rows == NULL) {
        empty_plan(body);
        PyErr_NoMemory();
        return -1;
    }
    body->ints = rows;
    body->floats = (double *)((char *)rows + ints_len);
    memcpy(body->ints, ints, (size_t)ints_len);
    memcpy(body->floats, floats, (size_t)floats_len);
    body->plan = Py_NewRef(plan);
    body->plain = plain;
    body->shield_headers = Py_NewRef(shield_headers);
    body->n_rows = n_rows;
    body->pid_row = pid_row;
    body->session_row = session_row;
    body->pid_seen = pid_seen;
    body->no_session_hits = no_session_hits;
    body->step_row = step_row;
    body->step_seen = step_seen;
    return 0;
}

/* A copy of a template's plan body for one address (new references, its own rows). */
static int copy_body(Lane *self, PlanSlot *to, const PlanSlot *from) {
    size_t ints_bytes = sizeof(int64_t) * (size_t)(from->n_rows * self->ev_int_width);
    size_t floats_bytes = sizeof(double) * (size_t)(from->n_rows * self->ev_float_width);
    void *rows = PyMem_Malloc(ints_bytes + floats_bytes);
    if (rows == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *to = *from;
    to->ints = rows;
    to->floats = (double *)((char *)rows + ints_bytes);
    memcpy(to->ints, from->ints, ints_bytes);
    memcpy(to->floats, from->floats, floats_bytes);
    for (int f = 0; f < N_FIELDS; f++) Py_XINCREF(to->fields[f]);
    Py_XINCREF(to->plan);
    Py_XINCREF(to->shield_headers);
    if (to->rule_globs != NULL) to->rule_globs->refs++;
    to->hits = 0;
    return 0;
}

/* Put a plan body (its references handed over) under (shape, group, ip); the slot's previous
 * plan, if any, retires. NULL on a Python error (the body is emptied). */
static PlanSlot *put_plan(Lane *self, uint32_t shape_index, uint32_t gen, int group, const char *ip, int ip_len,
                          PlanSlot *body) {
    uint64_t h = plan_hash(self, shape_index, gen, group, ip, ip_len);
    PlanSlot *target = find_plan(self, h, shape_index, gen, group, ip, ip_len);
    if (target == NULL) {
        uint32_t bucket = (uint32_t)(h & (self->plan_buckets - 1));
        uint32_t base = bucket * WAYS;
        int victim = -1;
        for (int w = 0; w < WAYS && victim < 0; w++) {
            PlanSlot *candidate = &self->plans[base + w];
            /* empty, or made for a shape slot that has since been reused */
            if (candidate->hash == 0 || self->shapes[candidate->shape_slot].gen != candidate->shape_gen) victim = w;
        }
        if (victim < 0) victim = self->plan_next[bucket]++ % WAYS;
        target = &self->plans[base + victim];
    }
    if (retire_plan(self, target) < 0) {
        empty_plan(body);
        return NULL;
    }
    *target = *body;
    target->hash = h;
    target->shape_slot = shape_index;
    target->shape_gen = gen;
    target->group = group;
    target->ip_len = ip_len;
    memcpy(target->ip, ip, (size_t)ip_len);
    target->hits = 0;
    return target;
}

static uint64_t template_hash(uint32_t shape_index, uint32_t gen, int group) {
    uint64_t h = mix(((uint64_t)shape_index << 32) ^ gen ^ ((uint64_t)group << 24) ^ 0x5bd1e995ULL);
    return h ? h : 1;
}

static Template *find_template(Lane *self, uint32_t shape_index, uint32_t gen, int group) {
    uint64_t h = template_hash(shape_index, gen, group);
    uint32_t base = (uint32_t)(h & (self->template_buckets - 1)) * WAYS;
    for (int w = 0; w < WAYS; w++) {
        Template *t = &self->templates[base + w];
        if (t->hash == h && t->shape_slot == shape_index && t->shape_gen == gen && t->group == group) return t;
    }
    return NULL;
}

static void empty_template(Template *t) {
    t->hash = 0;
    empty_plan(&t->proto);
    for (int r = 0; r < t->n_recipes; r++) {
        Py_CLEAR(t->recipes[r].kind);
        for (int k = 0; k < t->recipes[r].n_parts; k++) Py_CLEAR(t->recipes[r].parts[k]);
    }
    t->n_recipes = t->n_items = 0;
}

/* Read `recipes` ((row, kind, (part, ...)), ...), `items` ((row, column), ...) and `excluded`
 * ((net, mask), ...; or None when an IPv6 network is excluded too) into the template. */
static int set_recipes(Template *t, PyObject *recipes, PyObject *items, PyObject *excluded, int excluded_v6) {
    PyObject *r_fast = PySequence_Fast(recipes, "recipes"), *i_fast = PySequence_Fast(items, "items"),
             *e_fast = PySequence_Fast(excluded, "excluded");
    int ok = r_fast && i_fast && e_fast && PySequence_Fast_GET_SIZE(r_fast) <= MAX_ROWS &&
             PySequence_Fast_GET_SIZE(i_fast) <= MAX_ROWS && PySequence_Fast_GET_SIZE(e_fast) <= MAX_EXCLUDED;
    for (Py_ssize_t i = 0; ok && i < PySequence_Fast_GET_SIZE(r_fast); i++) {
        Recipe *recipe = &t->recipes[i];
        PyObject *kind, *parts;
        ok = PyArg_ParseTuple(PySequence_Fast_GET_ITEM(r_fast, i), "iUO!", &recipe->row, &kind, &PyTuple_Type,
                              &parts) &&
             recipe->row >= 0 && recipe->row < t->proto.n_rows && PyTuple_GET_SIZE(parts) >= 1 &&
             PyTuple_GET_SIZE(parts) <= MAX_PARTS;
        if (!ok) break;
        recipe->kind = Py_NewRef(kind);
        recipe->n_parts = (int)PyTuple_GET_SIZE(parts);
        for (int k = 0; k < recipe->n_parts; k++) {
            PyObject *part = PyTuple_GET_ITEM(parts, k);
            ok = ok && (PyUnicode_Check(part) || PyLong_Check(part));
            recipe->parts[k] = Py_NewRef(part);
        }
        t->n_recipes = (int)i + 1;
    }
    for (Py_ssize_t i = 0; ok && i < PySequence_Fast_GET_SIZE(i_fast); i++) {
        ok = PyArg_ParseTuple(PySequence_Fast_GET_ITEM(i_fast, i), "ii", &t->item_rows[i], &t->item_cols[i]) &&
             t->item_rows[i] >= 0 && t->item_rows[i] < t->proto.n_rows;
        t->n_items = (int)i + 1;
    }
    for (Py_ssize_t i = 0; ok && i < PySequence_Fast_GET_SIZE(e_fast); i++) {
        unsigned long net, mask;
        ok = PyArg_ParseTuple(PySequence_Fast_GET_ITEM(e_fast, i), "kk", &net, &mask);
        t->excluded_net[i] = (uint32_t)net;
        t->excluded_mask[i] = (uint32_t)mask;
        t->n_excluded = (int)i + 1;
    }
    t->excluded_v6 = excluded_v6;
    Py_XDECREF(r_fast);
    Py_XDECREF(i_fast);
    Py_XDECREF(e_fast);
    if (!ok && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "install: malformed address recipes");
    return ok ? 0 : -1;
}

/* Append a recipe part's text to buf; 0 when it does not fit. */
static int append_part(char *buf, Py_ssize_t *at, Py_ssize_t cap, const char *text, Py_ssize_t len) {
    if (*at + len > cap) return 0;
    memcpy(buf + *at, text, (size_t)len);
    *at += len;
    return 1;
}

/* The plan of a plain address, made from its shape's template; NULL (no exception) when the
 * address is not plain, a rule may name it, or anything goes wrong: Python then plans it. */
static PlanSlot *instantiate(Lane *self, Template *t, Scan *scan, uint32_t shape_index, uint32_t gen) {
    const Address *addr = &scan->client;
    if (addr->v4) {
        for (int i = 0; i < t->n_excluded; i++)
            if ((addr->value & t->excluded_mask[i]) == t->excluded_net[i]) return NULL;
    } else if (t->excluded_v6) {
        return NULL;
    }
    PyObject *ip = PyUnicode_DecodeASCII(addr->text, addr->len, NULL);
    PyObject *prefix = ip != NULL ? PyObject_CallOneArg(self->address_cb, ip) : NULL;
    PlanSlot body;
    int made = 0;
    if (prefix != NULL && PyUnicode_Check(prefix) && copy_body(self, &body, &t->proto) == 0) {
        made = 1;
        Py_ssize_t prefix_len;
        const char *prefix_text = PyUnicode_AsUTF8AndSize(prefix, &prefix_len);
        int iw = self->ev_int_width;
        for (int r = 0; made && r < t->n_recipes; r++) {
            Recipe *recipe = &t->recipes[r];
            char key[512];
            Py_ssize_t at = 0;
            for (int k = 0; made && k < recipe->n_parts; k++) {
                PyObject *part = recipe->parts[k];
                if (PyLong_Check(part)) {
                    long which = PyLong_AsLong(part);
                    made = which == PART_ADDRESS ? append_part(key, &at, sizeof key, addr->text, addr->len)
                                                 : prefix_text != NULL &&
                                                       append_part(key, &at, sizeof key, prefix_text, prefix_len);
                } else {
                    Py_ssize_t len;
                    const char *text = PyUnicode_AsUTF8AndSize(part, &len);
                    made = text != NULL && append_part(key, &at, sizeof key, text, len);
                }
            }
            /* hash((kind, key)) or 1, as shieldware.windows.table hashes a window key */
            PyObject *key_text = made ? PyUnicode_DecodeUTF8(key, at, NULL) : NULL;
            PyObject *pair = key_text != NULL ? PyTuple_Pack(2, recipe->kind, key_text) : NULL;
            Py_hash_t h = pair != NULL ? PyObject_Hash(pair) : -1;
            Py_XDECREF(key_text);
            Py_XDECREF(pair);
            made = made && h != -1;
            if (made) body.ints[recipe->row * iw] = h == 0 ? 1 : (int64_t)h;
        }
        for (int i = 0; made && i < t->n_items; i++)
            made = str_hash_item(ip, &body.ints[t->item_rows[i] * iw + t->item_cols[i]]);
        if (made) {
            Py_XSETREF(body.fields[F_CLIENT_IP], Py_NewRef(ip));
        } else {
            empty_plan(&body);
        }
    }
    Py_XDECREF(ip);
    Py_XDECREF(prefix);
    PyErr_Clear();
    if (!made) return NULL;
    return put_plan(self, shape_index, gen, scan->group, addr->text, addr->len, &body);
}

/* install(shape, ip, group, plan, ints, floats, pid_row, pid_seen, session_row, no_session_hits, step_row,
 *         step_seen, rule_globs, plain, shield_headers[, recipes, items, excluded, excluded_v6]): the plan for
 *         (shape, ip, group);
 * with recipes, also the template for every plain address of (shape, group). */
static PyObject *Lane_install(Lane *self, PyObject *args) {
    const char *shape, *ip, *ints, *floats;
    Py_ssize_t shape_len, ip_len, ints_len, floats_len;
    int group, pid_row, session_row, step_row, plain, excluded_v6 = 0;
    long long pid_seen, no_session_hits, step_seen;
    PyObject *plan, *rule_globs, *shield_headers, *recipes = NULL, *items = NULL, *excluded = NULL;
    if (!PyArg_ParseTuple(args, "y#s#iOy#y#iLiLiLOpO!|OOOp", &shape, &shape_len, &ip, &ip_len, &group, &plan, &ints,
                          &ints_len, &floats, &floats_len, &pid_row, &pid_seen, &session_row, &no_session_hits,
                          &step_row, &step_seen, &rule_globs, &plain, &PyTuple_Type, &shield_headers, &recipes,
                          &items, &excluded, &excluded_v6))
        return NULL;
    if (ip_len >= IP_MAX || group < 0 || group >= self->n_groups) {
        PyErr_SetString(PyExc_ValueError, "install: no such group, or not an address");
        return NULL;
    }
    if (self->busy) Py_RETURN_NONE; /* another thread is deciding: this plan is made again later */
    PlanSlot body;
    if (fill_body(self, &body, plan, ints, ints_len, floats, floats_len, pid_row, pid_seen, session_row,
                  no_session_hits, step_row, step_seen, rule_globs, plain, shield_headers) < 0)
        return NULL;
    self->busy = 1;
    uint32_t shape_index;
    ShapeSlot *slot = insert_shape(self, shape, shape_len, &shape_index);
    Template template;
    memset(&template, 0, sizeof template);
    int ok = slot != NULL;
    if (ok && recipes != NULL && recipes != Py_None) {
        ok = copy_body(self, &template.proto, &body) == 0;
        if (ok && set_recipes(&template, recipes, items, excluded, excluded_v6) < 0) {
            empty_template(&template);
            ok = 0;
        }
    }
    if (!ok) {
        empty_plan(&body);
        self->busy = 0;
        return NULL;
    }
    PlanSlot *put = put_plan(self, shape_index, slot->gen, group, ip, (int)ip_len, &body);
    if (put != NULL && template.proto.plan != NULL) {
        uint64_t h = template_hash(shape_index, slot->gen, group);
        uint32_t bucket = (uint32_t)(h & (self->template_buckets - 1)), base = bucket * WAYS;
        Template *target = find_template(self, shape_index, slot->gen, group);
        for (int w = 0; target == NULL && w < WAYS; w++) {
            Template *candidate = &self->templates[base + w];
            if (candidate->hash == 0 || self->shapes[candidate->shape_slot].gen != candidate->shape_gen)
                target = candidate;
        }
        if (target == NULL) target = &self->templates[base + self->template_next[bucket]++ % WAYS];
        empty_template(target);
        *target = template;
        target->hash = h;
        target->shape_slot = shape_index;
        target->shape_gen = slot->gen;
        target->group = group;
    } else {
        empty_template(&template);
    }
    self->busy = 0;
    if (put == NULL) return NULL;
    Py_RETURN_NONE;
}

/* set_triggers(group, ((row, field, op, field2, value), ...), ...): when the group's plans need Python */
static PyObject *Lane_set_triggers(Lane *self, PyObject *args) {
    int group;
    PyObject *triggers;
    if (!PyArg_ParseTuple(args, "iO", &group, &triggers)) return NULL;
    if (group < 0 || group >= self->n_groups) {
        PyErr_SetString(PyExc_ValueError, "set_triggers: no such group");
        return NULL;
    }
    PyObject *outer = PySequence_Fast(triggers, "triggers must be a sequence");
    if (outer == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(outer);
    Group parsed = self->groups[group];
    parsed.n_triggers = 0;
    int ok = n <= MAX_TRIGGERS;
    for (Py_ssize_t t = 0; ok && t < n; t++) {
        PyObject *inner = PySequence_Fast(PySequence_Fast_GET_ITEM(outer, t), "a trigger is a sequence of atoms");
        if (inner == NULL) {
            ok = 0;
            break;
        }
        Py_ssize_t m = PySequence_Fast_GET_SIZE(inner);
        Trigger *trigger = &parsed.triggers[t];
        trigger->n_atoms = (int)m;
        ok = m >= 1 && m <= MAX_ATOMS;
        for (Py_ssize_t a = 0; ok && a < m; a++) {
            Atom *atom = &trigger->atoms[a];
            ok = PyArg_ParseTuple(PySequence_Fast_GET_ITEM(inner, a), "iiiid", &atom->row, &atom->field, &atom->op,
                                  &atom->field2, &atom->value) &&
                 atom->row >= 0 && atom->row < MAX_ROWS && atom->field >= 0 && atom->field < self->out_width &&
                 atom->field2 >= 0 && atom->field2 < self->out_width && atom->op >= 0 && atom->op < N_OPS;
        }
        Py_DECREF(inner);
        parsed.n_triggers = (int)t + 1;
    }
    Py_DECREF(outer);
    if (!ok) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "set_triggers: malformed triggers");
        return NULL;
    }
    self->groups[group].n_triggers = parsed.n_triggers;
    memcpy(self->groups[group].triggers, parsed.triggers, sizeof parsed.triggers);
    Py_RETURN_NONE;
}

static PyObject *Lane_clear(Lane *self, PyObject *Py_UNUSED(ignored)) {
    if (clear_tables(self) < 0) return NULL;
    Py_RETURN_NONE;
}

/* arm(refresh_due): answer requests until `refresh_due` (the switchboard's next refresh); disarm() */
static PyObject *Lane_arm(Lane *self, PyObject *arg) {
    double due = PyFloat_AsDouble(arg);
    if (due == -1.0 && PyErr_Occurred()) return NULL;
    self->armed = 1;
    self->refresh_due = due;
    Py_RETURN_NONE;
}

static PyObject *Lane_disarm(Lane *self, PyObject *Py_UNUSED(ignored)) {
    self->armed = 0;
    Py_RETURN_NONE;
}

/* drain() -> ([(plan, decisions)], latency bucket counts, latency sum): what the lane decided since
 * the last drain (metrics fold it in), counters reset. */
static PyObject *Lane_drain(Lane *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *plans = self->retired;
    PyObject *fresh = PyList_New(0);
    PyObject *latency = PyTuple_New(self->n_bounds + 1);
    if (fresh == NULL || latency == NULL) {
        Py_XDECREF(fresh);
        Py_XDECREF(latency);
        return NULL;
    }
    for (uint32_t i = 0; i < self->plan_buckets * WAYS; i++) {
        PlanSlot *slot = &self->plans[i];
        if (slot->hits == 0 || slot->plan == NULL) continue;
        PyObject *entry = Py_BuildValue("(OK)", slot->plan, (unsigned long long)slot->hits);
        if (entry == NULL || PyList_Append(plans, entry) < 0) {
            Py_XDECREF(entry);
            Py_DECREF(fresh);
            Py_DECREF(latency);
            return NULL;
        }
        Py_DECREF(entry);
        slot->hits = 0;
    }
    for (int b = 0; b <= self->n_bounds; b++) {
        PyObject *n = PyLong_FromUnsignedLongLong(self->latency[b]);
        if (n == NULL) {
            Py_DECREF(fresh);
            Py_DECREF(latency);
            return NULL;
        }
        PyTuple_SET_ITEM(latency, b, n);
        self->latency[b] = 0;
    }
    double sum = self->latency_sum;
    self->latency_sum = 0.0;
    self->retired = fresh;
    return Py_BuildValue("(NNd)", plans, latency, sum);
}

static PyObject *Lane_counts(Lane *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *counts = PyDict_New();
    if (counts == NULL) return NULL;
    for (int i = 0; i <= N_OUTCOMES; i++) { /* the outcomes, and then how many were served decided ahead */
        PyObject *value = PyLong_FromUnsignedLongLong(i < N_OUTCOMES ? self->counts[i] : self->served_ahead);
        if (value == NULL || PyDict_SetItemString(counts, i < N_OUTCOMES ? OUTCOME_NAMES[i] : "ahead", value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(counts);
            return NULL;
        }
        Py_DECREF(value);
    }
    return counts;
}

/* Pieces of decide(), for the tests that hold them to their Python counterparts. */
static PyObject *Lane_scan(Lane *self, PyObject *scope) {
    Scan scan;
    scan_scope(self, scope, &scan);
    if (scan.outcome < 0 && !shape_is_plain(self->shape, scan.shape_len)) scan.outcome = OUT_HEADERS;
    if (scan.outcome >= 0) return Py_BuildValue("(sO)", OUTCOME_NAMES[scan.outcome], Py_None);
    PyObject *session = scan.session.len > 0 ? PyUnicode_DecodeASCII(scan.session.data,
                                                                      scan.session.len < MAX_SESSION ? scan.session.len
                                                                                                     : MAX_SESSION,
                                                                      NULL)
                                             : (Py_INCREF(Py_None), Py_None);
    if (session == NULL) return NULL;
    PyObject *result = Py_BuildValue("(s{s:y#,s:s#,s:i,s:N})", "lane", "shape", self->shape, scan.shape_len,
                                     "client_ip", scan.client.text, (Py_ssize_t)scan.client.len, "group", scan.group,
                                     "session", session);
    return result;
}

static PyObject *Lane_triggered(Lane *self, PyObject *args) {
    int group;
    const char *rows;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "iy#", &group, &rows, &len)) return NULL;
    if (group < 0 || group >= self->n_groups || len % (Py_ssize_t)(sizeof(double) * self->out_width) ||
        len > (Py_ssize_t)sizeof self->out) {
        PyErr_SetString(PyExc_ValueError, "triggered: bad group or rows");
        return NULL;
    }
    double out[MAX_ROWS * 64] = {0};
    memcpy(out, rows, (size_t)len);
    int n_rows = (int)(len / (Py_ssize_t)(sizeof(double) * self->out_width));
    return PyLong_FromUnsignedLong(fired_triggers(&self->groups[group], out, self->out_width, n_rows));
}

/* A group's methods as Names: how many, or -1 when some name does not fit (the set is asked then). */
static int method_names(PyObject *methods, Name *out) {
    if (PySet_GET_SIZE(methods) > MAX_METHODS) return -1;
    PyObject *each = PyObject_GetIter(methods), *name;
    if (each == NULL) {
        PyErr_Clear();
        return -1;
    }
    int n = 0;
    while (n >= 0 && (name = PyIter_Next(each)) != NULL) {
        Py_ssize_t len;
        const char *data = PyUnicode_Check(name) ? PyUnicode_AsUTF8AndSize(name, &len) : NULL;
        if (data == NULL || len > (Py_ssize_t)sizeof out[n].bytes) {
            n = -1;
        } else {
            out[n].len = len;
            memcpy(out[n].bytes, data, (size_t)len);
            n++;
        }
        Py_DECREF(name);
    }
    Py_DECREF(each);
    PyErr_Clear();
    return n;
}

static int set_groups(Lane *self, PyObject *groups) {
    PyObject *fast = PySequence_Fast(groups, "groups must be a sequence");
    if (fast == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n < 1 || n > MAX_GROUPS) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "between 1 and %d route groups", MAX_GROUPS);
        return -1;
    }
    for (Py_ssize_t g = 0; g < n; g++) {
        PyObject *methods, *globs;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, g), "OO", &methods, &globs) ||
            (methods != Py_None && !PyFrozenSet_Check(methods)) || !PyTuple_Check(globs)) {
            Py_DECREF(fast);
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "a group is (frozenset or None, tuple of globs)");
            return -1;
        }
        Group *group = &self->groups[g];
        group->methods = methods == Py_None ? NULL : Py_NewRef(methods);
        group->n_methods = group->methods != NULL ? method_names(methods, group->method_names) : 0;
        if ((group->globs = compile_globs(globs)) == NULL) {
            Py_DECREF(fast);
            return -1;
        }
        group->n_triggers = 0;
    }
    self->n_groups = (int)n;
    Py_DECREF(fast);
    return 0;
}

static int set_trusted(Lane *self, PyObject *networks) {
    PyObject *fast = PySequence_Fast(networks, "trusted_v4 must be a sequence");
    if (fast == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > MAX_TRUSTED) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "at most %d trusted IPv4 networks", MAX_TRUSTED);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long net, mask;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "kk", &net, &mask)) {
            Py_DECREF(fast);
            return -1;
        }
        self->trusted_net[i] = (uint32_t)net;
        self->trusted_mask[i] = (uint32_t)mask;
    }
    self->n_trusted = (int)n;
    Py_DECREF(fast);
    return 0;
}

/* The Decision class and its fields' slots (member descriptors, in F_* order): the lane fills
 * slots directly, so every field must be a plain object slot. */
static int set_decision_type(Lane *self, PyObject *type, PyObject *slots) {
    if (!PyType_Check(type) || !PyTuple_Check(slots) || PyTuple_GET_SIZE(slots) != N_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "decision_type must be a class and decision_slots its fields' slots");
        return -1;
    }
    for (int f = 0; f < N_FIELDS; f++) {
        PyObject *descr = PyTuple_GET_ITEM(slots, f);
        if (!Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "decision field %d is not a slot", f);
            return -1;
        }
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type != T_OBJECT_EX || (member->flags & READONLY)) {
            PyErr_Format(PyExc_TypeError, "decision field %s is not a writable object slot", member->name);
            return -1;
        }
        self->offsets[f] = member->offset;
    }
    self->decision_type = (PyTypeObject *)Py_NewRef(type);
    return 0;
}

static int set_bounds(Lane *self, PyObject *bounds) {
    PyObject *fast = PySequence_Fast(bounds, "latency_bounds must be a sequence");
    if (fast == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > MAX_BOUNDS) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "at most %d latency bounds", MAX_BOUNDS);
        return -1;
    }
    for (Py_ssize_t b = 0; b < n; b++) {
        self->bounds[b] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, b));
        if (self->bounds[b] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
    }
    self->n_bounds = (int)n;
    Py_DECREF(fast);
    return 0;
}

static int Lane_init(Lane *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"groups", "default_group", "value_free", "bail_headers", "bail_prefixes",
                               "bail_paths", "bail_path_prefix", "has_trusted", "trusted_v4", "trusts",
                               "normalise", "session_cookies", "absent_cookies", "kernel", "keys", "state",
                               "registers", "capacity", "lock", "table", "layout", "plans", "shapes", "seed",
                               "decision_type", "decision_slots", "ref_counter", "ref_tag", "latency_bounds",
                               "reporter", "address", "templates", "client_header", NULL};
    PyObject *groups, *value_free, *bail_headers, *bail_prefixes, *bail_paths, *bail_path_prefix, *trusted_v4,
        *trusts, *normalise, *session_cookies, *absent_cookies, *lock, *table, *layout, *decision_type,
        *decision_slots, *ref_counter, *ref_tag, *latency_bounds, *reporter, *address_cb;
    unsigned int templates;
    int default_group, has_trusted, client_header;
    unsigned long long kernel, keys, state, registers, seed;
    long long capacity, max_step;
    unsigned int plans, shapes;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OiOOOOUpOOOOOKKKKLOOOIIKOOOUOOOIi", keywords, &groups,
                                     &default_group, &value_free, &bail_headers, &bail_prefixes, &bail_paths,
                                     &bail_path_prefix, &has_trusted, &trusted_v4, &trusts, &normalise,
                                     &session_cookies, &absent_cookies, &kernel, &keys, &state, &registers, &capacity,
                                     &lock, &table, &layout, &plans, &shapes, &seed, &decision_type, &decision_slots,
                                     &ref_counter, &ref_tag, &latency_bounds, &reporter, &address_cb, &templates,
                                     &client_header))
        return -1;
    if (client_header < CLIENT_XFF || client_header > CLIENT_REAL_IP) {
        PyErr_SetString(PyExc_ValueError, "client_header: 0 x-forwarded-for, 1 forwarded, 2 x-real-ip");
        return -1;
    }
    self->client_header = client_header;
    if (!PyCallable_Check(address_cb)) {
        PyErr_SetString(PyExc_TypeError, "address must be callable");
        return -1;
    }
    self->reporter = Py_NewRef(reporter);
    self->address_cb = Py_NewRef(address_cb);
    if (set_decision_type(self, decision_type, decision_slots) < 0 || set_bounds(self, latency_bounds) < 0) return -1;
    if (!PyUnicode_IS_ASCII(ref_tag)) {
        PyErr_SetString(PyExc_ValueError, "ref_tag must be ASCII");
        return -1;
    }
    self->ref_counter = Py_NewRef(ref_counter);
    self->ref_tag = Py_NewRef(ref_tag);
    if ((self->retired = PyList_New(0)) == NULL) return -1;
    if (self->plans != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Lane is configured once");
        return -1;
    }
    if (!PyDict_Check(bail_paths) || PyUnicode_GET_LENGTH(bail_path_prefix) == 0 || !PyCallable_Check(trusts) || !PyCallable_Check(normalise) || !kernel ||
        !keys || !state || !registers || capacity < 1) {
        PyErr_SetString(PyExc_ValueError, "Lane: bad configuration");
        return -1;
    }
    if (!PyArg_ParseTuple(layout, "iiiiiiiiL", &self->ev_int_width, &self->ev_float_width, &self->out_width,
                          &self->col_item, &self->col_flags, &self->col_step, &self->col_time, &self->out_follows,
                          &max_step))
        return -1;
    if (self->ev_int_width > 8 || self->ev_float_width > 8 || self->out_width > 64) {
        PyErr_SetString(PyExc_ValueError, "Lane: the window layout is wider than the lane's buffers");
        return -1;
    }
    self->max_step = max_step;
    if (set_groups(self, groups) < 0 || set_trusted(self, trusted_v4) < 0) return -1;
    if (default_group < 0 || default_group >= self->n_groups) {
        PyErr_SetString(PyExc_ValueError, "Lane: default_group out of range");
        return -1;
    }
    self->default_group = default_group;
    if (set_names(value_free, &self->value_free, "value_free") < 0 ||
        set_names(bail_headers, &self->bail_names, "bail_headers") < 0 ||
        (self->n_bail_prefixes = copy_names(bail_prefixes, self->bail_prefixes, MAX_NAMES, "bail_prefixes")) < 0 ||
        set_first_bytes(self->bail_prefixes, self->n_bail_prefixes, self->bail_prefix_first) < 0 ||
        (self->n_session_names = copy_names(session_cookies, self->session_names, MAX_NAMES, "session_cookies")) < 0 ||
        (self->n_absent_names = copy_names(absent_cookies, self->absent_names, MAX_NAMES, "absent_cookies")) < 0)
        return -1;
    self->bail_paths = Py_NewRef(bail_paths);
    self->bail_paths_size = -1;
    self->last_peer_len = -1;
    self->bail_path_prefix = Py_NewRef(bail_path_prefix);
    if ((self->prefix = PyUnicode_AsUTF8AndSize(bail_path_prefix, &self->prefix_len)) == NULL) return -1;
    self->has_trusted = has_trusted;
    self->trusts = Py_NewRef(trusts);
    self->normalise = Py_NewRef(normalise);
    self->kernel = (kernel_fn)(uintptr_t)kernel;
    self->keys = (int64_t *)(uintptr_t)keys;
    self->state = (double *)(uintptr_t)state;
    self->registers = (uint8_t *)(uintptr_t)registers;
    self->capacity = capacity;
    self->lock = Py_NewRef(lock);
    if ((self->lock_locked = PyObject_GetAttrString(lock, "locked")) == NULL) return -1;
    self->table = Py_NewRef(table);
    self->seed = seed | 1;
    uint32_t pb = 1, sb = 1;
    while (pb * WAYS < plans && pb < (1u << 24)) pb <<= 1;
    while (sb * WAYS < shapes && sb < (1u << 20)) sb <<= 1;
    self->plan_buckets = pb;
    self->shape_buckets = sb;
    self->plans = table_alloc((size_t)pb * WAYS, sizeof(PlanSlot), &self->plans_mapped);
    self->shapes = table_alloc((size_t)sb * WAYS, sizeof(ShapeSlot), &self->shapes_mapped);
    self->plan_next = PyMem_Calloc(pb, 1);
    self->shape_next = PyMem_Calloc(sb, 1);
    uint32_t tb = 1;
    while (tb * WAYS < templates && tb < (1u << 16)) tb <<= 1;
    self->template_buckets = tb;
    self->templates = table_alloc((size_t)tb * WAYS, sizeof(Template), &self->templates_mapped);
    self->template_next = PyMem_Calloc(tb, 1);
    if (!self->plans || !self->shapes || !self->plan_next || !self->shape_next || !self->templates ||
        !self->template_next) {
        PyErr_NoMemory();
        return -1;
    }
    self->armed = 0;
    self->refresh_due = -1.0 / 0.0;
    return 0;
}

static int Lane_traverse(Lane *self, visitproc visit, void *arg) {
    for (int g = 0; g < self->n_groups; g++) {
        Py_VISIT(self->groups[g].methods);
    }
    Py_VISIT(self->bail_paths);
    Py_VISIT(self->bail_path_prefix);
    Py_VISIT(self->trusts);
    Py_VISIT(self->normalise);
    Py_VISIT(self->lock);
    Py_VISIT(self->lock_locked);
    Py_VISIT(self->table);
    Py_VISIT(self->decision_type);
    Py_VISIT(self->ref_counter);
    Py_VISIT(self->ref_tag);
    Py_VISIT(self->retired);
    Py_VISIT(self->reporter);
    Py_VISIT(self->address_cb);
    Py_VISIT(self->front_app);
    Py_VISIT(self->front_clock);
    Py_VISIT(self->front_rest);
    Py_VISIT(self->front_hear);
    Py_VISIT(self->front_hear_on);
    Py_VISIT(self->front_watched);
    Py_VISIT(self->front_rearm);
    if (self->templates != NULL)
        for (uint32_t i = 0; i < self->template_buckets * WAYS; i++) {
            Template *t = &self->templates[i];
            Py_VISIT(t->proto.plan);
            Py_VISIT(t->proto.shield_headers);
            for (int f = 0; f < N_FIELDS; f++) Py_VISIT(t->proto.fields[f]);
            for (int r = 0; r < t->n_recipes; r++) {
                Py_VISIT(t->recipes[r].kind);
                for (int k = 0; k < t->recipes[r].n_parts; k++) Py_VISIT(t->recipes[r].parts[k]);
            }
        }
    if (self->plans != NULL)
        for (uint32_t i = 0; i < self->plan_buckets * WAYS; i++) {
            Py_VISIT(self->plans[i].plan);
            for (int f = 0; f < N_FIELDS; f++) Py_VISIT(self->plans[i].fields[f]);
            Py_VISIT(self->plans[i].shield_headers);
        }
    return 0;
}

static int Lane_clear_refs(Lane *self) {
    for (int g = 0; g < self->n_groups; g++) {
        Py_CLEAR(self->groups[g].methods);
        free_globs(self->groups[g].globs);
        self->groups[g].globs = NULL;
    }
    self->n_groups = 0;
    Py_CLEAR(self->bail_paths);
    Py_CLEAR(self->bail_path_prefix);
    Py_CLEAR(self->trusts);
    Py_CLEAR(self->normalise);
    Py_CLEAR(self->lock);
    Py_CLEAR(self->lock_locked);
    Py_CLEAR(self->table);
    Py_CLEAR(self->decision_type);
    Py_CLEAR(self->ref_counter);
    Py_CLEAR(self->ref_tag);
    Py_CLEAR(self->retired);
    Py_CLEAR(self->reporter);
    Py_CLEAR(self->address_cb);
    Py_CLEAR(self->front_app);
    Py_CLEAR(self->front_clock);
    Py_CLEAR(self->front_rest);
    Py_CLEAR(self->front_hear);
    Py_CLEAR(self->front_hear_on);
    Py_CLEAR(self->front_watched);
    Py_CLEAR(self->front_rearm);
    if (self->templates != NULL)
        for (uint32_t i = 0; i < self->template_buckets * WAYS; i++) empty_template(&self->templates[i]);
    if (self->plans != NULL)
        for (uint32_t i = 0; i < self->plan_buckets * WAYS; i++) empty_plan(&self->plans[i]);
    return 0;
}

static void Lane_dealloc(Lane *self) {
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) PyObject_ClearWeakRefs((PyObject *)self);
    Lane_clear_refs(self);
    if (self->shapes != NULL)
        for (uint32_t i = 0; i < self->shape_buckets * WAYS; i++) PyMem_Free(self->shapes[i].bytes);
    table_free(self->plans, (size_t)self->plan_buckets * WAYS, sizeof(PlanSlot), self->plans_mapped);
    table_free(self->shapes, (size_t)self->shape_buckets * WAYS, sizeof(ShapeSlot), self->shapes_mapped);
    PyMem_Free(self->plan_next);
    PyMem_Free(self->shape_next);
    table_free(self->templates, (size_t)self->template_buckets * WAYS, sizeof(Template), self->templates_mapped);
    PyMem_Free(self->template_next);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Lane_set_front(Lane *self, PyObject *args, PyObject *kwargs);
static PyObject *Lane_set_hear_on(Lane *self, PyObject *statuses);
static PyObject *Lane_handle(Lane *self, PyObject *const *args, Py_ssize_t nargs);
static PyObject *Lane_decide_ahead(Lane *self, PyObject *scopes);

static PyMethodDef Lane_methods[] = {
    {"decide", (PyCFunction)(void (*)(void))Lane_decide, METH_FASTCALL,
     "decide(scope, now) -> app scope | None | (0, shape, ip, group) | (1, stats, plan, ip, fired, follows)"
     " | (2, Decision, follows) | (3, plan, ip, pid, session, made, started)"},
    {"conclude", (PyCFunction)(void (*)(void))Lane_conclude, METH_FASTCALL,
     "conclude(scope, now, plan, observed, made, started): decide()'s answer once a shared store observed the"
     " plan's rows"},
    {"set_remote", (PyCFunction)Lane_set_remote, METH_O, "set_remote(on): the windows live in a shared store"},
    {"install", (PyCFunction)Lane_install, METH_VARARGS, "install a plan for (shape, ip, group)"},
    {"set_triggers", (PyCFunction)Lane_set_triggers, METH_VARARGS, "set_triggers(group, triggers)"},
    {"clear", (PyCFunction)Lane_clear, METH_NOARGS, "forget every plan"},
    {"arm", (PyCFunction)Lane_arm, METH_O, "arm(refresh_due): answer requests until then"},
    {"disarm", (PyCFunction)Lane_disarm, METH_NOARGS, "send every request to Python"},
    {"counts", (PyCFunction)Lane_counts, METH_NOARGS,
     "requests by outcome, and (\"ahead\") how many of them were served with an answer decide_ahead() left"},
    {"drain", (PyCFunction)Lane_drain, METH_NOARGS, "decisions made since the last drain, for the metrics"},
    {"scan", (PyCFunction)Lane_scan, METH_O, "what decide() reads from a scope (for tests)"},
    {"triggered", (PyCFunction)Lane_triggered, METH_VARARGS,
     "triggered(group, stats rows): the bits of the triggers that fire (for tests)"},
    {"set_front", (PyCFunction)(void (*)(void))Lane_set_front, METH_VARARGS | METH_KEYWORDS,
     "set_front(app, clock, rest, hear, watched, hear_on, rearm, scope_headers=True, scope_in_place=False): what handle() needs"},
    {"set_hear_on", (PyCFunction)Lane_set_hear_on, METH_O, "set_hear_on(statuses): the statuses planned requests feed back"},
    {"handle", (PyCFunction)(void (*)(void))Lane_handle, METH_FASTCALL,
     "handle(scope, receive, send): ShieldMiddleware's front door (see Lane_handle)"},
    {"decide_ahead", (PyCFunction)Lane_decide_ahead, METH_O,
     "decide_ahead(scopes): decide these scopes before handle() is called with them (see Lane_decide_ahead)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shieldware.fastlane._lane.Lane",
    .tp_basicsize = sizeof(Lane),
    .tp_weaklistoffset = offsetof(Lane, weakrefs),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The compiled fast lane (see shieldware/fastlane/__init__.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Lane_init,
    .tp_dealloc = (destructor)Lane_dealloc,
    .tp_traverse = (traverseproc)Lane_traverse,
    .tp_clear = (inquiry)Lane_clear_refs,
    .tp_methods = Lane_methods,
};

/* ---- the response watch --------------------------------------------------------------------- */

/* shieldware.response_watch.PyResponseWatch in C: the `send` the app is given. A response start
 * with neither an X-Shield-Event header nor a watched header (the usual one) only has its status
 * kept here; any other start is handed to the Python `notice_start`, so both watch alike. A start
 * the engine must hear of (events, or a status in hear_on) goes to `hear` instead of `send`, once. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *send, *watched, *status, *events, *outcomes;
    PyObject *hear, *hear_on, *decision; /* NULL when not given */
} ResponseWatch;

static PyObject *notice_hook; /* shieldware.response_watch.notice_start */
static PyObject *S_start, *S_status, *S_event_header;

/* 1: a header the Python notice must see (or a shape of headers it must judge), 0: none, -1: error */
static int needs_notice(PyObject *headers) {
    if (headers == NULL || headers == Py_None) return 0;
    if (!PyList_CheckExact(headers) && !PyTuple_CheckExact(headers)) return 1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(headers);
    PyObject **items = PySequence_Fast_ITEMS(headers);
    const char *event = PyBytes_AS_STRING(S_event_header);
    Py_ssize_t event_len = PyBytes_GET_SIZE(S_event_header);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = items[i];
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) return 1;
        PyObject *name = PyTuple_GET_ITEM(item, 0);
        if (!PyBytes_CheckExact(name)) return 1;
        if (PyBytes_GET_SIZE(name) != event_len) continue;
        const char *text = PyBytes_AS_STRING(name);
        Py_ssize_t k = 0;
        while (k < event_len && (text[k] | (text[k] >= 'A' && text[k] <= 'Z' ? 0x20 : 0)) == event[k]) k++;
        if (k == event_len) return 1;
    }
    return 0;
}

static int watch_start(ResponseWatch *self, PyObject *message) {
    int notice = self->watched != NULL || !PyDict_CheckExact(message);
    PyObject *status = NULL;
    if (!notice) {
        status = PyDict_GetItemWithError(message, S_status);
        if (status == NULL && PyErr_Occurred()) return -1;
        PyObject *headers = PyDict_GetItemWithError(message, S_headers);
        if (headers == NULL && PyErr_Occurred()) return -1;
        notice = status == NULL || needs_notice(headers);
    }
    if (notice) {
        if (notice_hook == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "notice_responses_with() was not called");
            return -1;
        }
        PyObject *done = PyObject_CallFunctionObjArgs(notice_hook, (PyObject *)self, message, NULL);
        Py_XDECREF(done);
        return done == NULL ? -1 : 0;
    }
    if (self->status == NULL || self->status == Py_None) Py_XSETREF(self->status, Py_NewRef(status));
    return 0;
}

static PyObject *ResponseWatch_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    ResponseWatch *self = (ResponseWatch *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError, "a response watch takes one message");
        return NULL;
    }
    PyObject *message = args[0];
    PyObject *type = PyObject_GetItem(message, S_type); /* message["type"], as the Python watch reads it */
    if (type == NULL) return NULL;
    /* Types with dots are not interned, so the app's "http.response.start" is seldom S_start itself:
     * compared by length, then as ASCII bytes (a body's type differs in length). */
    int start = type == S_start;
    if (!start && PyUnicode_Check(type) && PyUnicode_GET_LENGTH(type) == PyUnicode_GET_LENGTH(S_start))
        start = PyUnicode_IS_ASCII(type) ? memcmp(PyUnicode_1BYTE_DATA(type), PyUnicode_1BYTE_DATA(S_start),
                                                  (size_t)PyUnicode_GET_LENGTH(S_start)) == 0
                                         : PyUnicode_Compare(type, S_start) == 0;
    Py_DECREF(type);
    if (start) {
        if (watch_start(self, message) < 0) return NULL;
        if (self->hear != NULL) {
            int heard = self->events != NULL ? PyObject_IsTrue(self->events) : 0;
            if (heard < 0) return NULL;
            if (!heard && self->hear_on != NULL && self->status != NULL && self->status != Py_None) {
                heard = PySet_Contains(self->hear_on, self->status);
                if (heard < 0) return NULL;
            }
            if (heard) {
                PyObject *hear = self->hear;
                self->hear = NULL; /* once: a second start is the server's to refuse */
                PyObject *awaitable = PyObject_CallFunctionObjArgs(hear, (PyObject *)self, message, NULL);
                Py_DECREF(hear);
                return awaitable;
            }
        }
    }
    return PyObject_CallOneArg(self->send, message);
}

/* hear, hear_on and decision: None (or not given) is none */
static PyObject *new_watch(PyTypeObject *type, PyObject *send, PyObject *watched, PyObject *hear, PyObject *hear_on,
                           PyObject *decision) {
    int some = PyObject_IsTrue(watched);
    if (some < 0) return NULL;
    if (hear_on != NULL && hear_on != Py_None && !PyAnySet_Check(hear_on)) {
        PyErr_SetString(PyExc_TypeError, "hear_on must be a set or frozenset of statuses");
        return NULL;
    }
    ResponseWatch *self = (ResponseWatch *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->vectorcall = ResponseWatch_vectorcall;
    self->send = Py_NewRef(send);
    self->watched = some ? Py_NewRef(watched) : NULL;
    self->hear = hear != NULL && hear != Py_None ? Py_NewRef(hear) : NULL;
    self->hear_on = hear_on != NULL && hear_on != Py_None ? Py_NewRef(hear_on) : NULL;
    self->decision = decision != NULL && decision != Py_None ? Py_NewRef(decision) : NULL;
    return (PyObject *)self;
}

static PyObject *ResponseWatch_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *send, *watched, *hear = NULL, *hear_on = NULL, *decision = NULL;
    static char *names[] = {"send", "watched", "hear", "hear_on", "decision", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OOO:ResponseWatch", names, &send, &watched, &hear, &hear_on,
                                     &decision))
        return NULL;
    return new_watch(type, send, watched, hear, hear_on, decision);
}

/* ResponseWatch(send, watched[, hear, hear_on, decision]) as the middleware calls it, once a
 * request: positional arguments taken as they are. Keywords go the way of tp_new, which parses them. */
static PyObject *ResponseWatch_construct(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if ((n == 2 || n == 5) && (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0))
        return new_watch((PyTypeObject *)type, args[0], args[1], n == 5 ? args[2] : NULL, n == 5 ? args[3] : NULL,
                         n == 5 ? args[4] : NULL);
    PyObject *positional = PyTuple_New(n);
    PyObject *keywords = kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0 ? PyDict_New() : NULL;
    if (positional == NULL || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0 && keywords == NULL)) {
        Py_XDECREF(positional);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) PyTuple_SET_ITEM(positional, i, Py_NewRef(args[i]));
    for (Py_ssize_t i = 0; keywords != NULL && i < PyTuple_GET_SIZE(kwnames); i++)
        if (PyDict_SetItem(keywords, PyTuple_GET_ITEM(kwnames, i), args[n + i]) < 0) {
            Py_DECREF(positional);
            Py_DECREF(keywords);
            return NULL;
        }
    PyObject *watch = ResponseWatch_new((PyTypeObject *)type, positional, keywords);
    Py_DECREF(positional);
    Py_XDECREF(keywords);
    return watch;
}

static int ResponseWatch_traverse(ResponseWatch *self, visitproc visit, void *arg) {
    Py_VISIT(self->send);
    Py_VISIT(self->watched);
    Py_VISIT(self->status);
    Py_VISIT(self->events);
    Py_VISIT(self->outcomes);
    Py_VISIT(self->hear);
    Py_VISIT(self->hear_on);
    Py_VISIT(self->decision);
    return 0;
}

static int ResponseWatch_clear(ResponseWatch *self) {
    Py_CLEAR(self->send);
    Py_CLEAR(self->watched);
    Py_CLEAR(self->status);
    Py_CLEAR(self->events);
    Py_CLEAR(self->outcomes);
    Py_CLEAR(self->hear);
    Py_CLEAR(self->hear_on);
    Py_CLEAR(self->decision);
    return 0;
}

static void ResponseWatch_dealloc(ResponseWatch *self) {
    PyObject_GC_UnTrack(self);
    ResponseWatch_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef ResponseWatch_members[] = {
    {"send", T_OBJECT, offsetof(ResponseWatch, send), READONLY, "the ASGI send it wraps"},
    {"watched", T_OBJECT, offsetof(ResponseWatch, watched), READONLY, "header names to copy (None: none)"},
    {"status", T_OBJECT, offsetof(ResponseWatch, status), 0, "the first response start's status, or None"},
    {"events", T_OBJECT, offsetof(ResponseWatch, events), 0, "the app's X-Shield-Event headers, or None"},
    {"outcomes", T_OBJECT, offsetof(ResponseWatch, outcomes), 0, "watched header values, or None"},
    {"hear", T_OBJECT, offsetof(ResponseWatch, hear), READONLY, "hear(watch, start): sends a start the engine must hear of"},
    {"hear_on", T_OBJECT, offsetof(ResponseWatch, hear_on), READONLY, "the statuses handed to hear, or None"},
    {"decision", T_OBJECT, offsetof(ResponseWatch, decision), READONLY, "the request's decision, or None"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ResponseWatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shieldware.fastlane._lane.ResponseWatch",
    .tp_basicsize = sizeof(ResponseWatch),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "ResponseWatch(send, watched, hear=None, hear_on=None, decision=None): "
              "shieldware.response_watch.PyResponseWatch in C.",
    .tp_new = ResponseWatch_new,
    .tp_vectorcall = ResponseWatch_construct,
    .tp_dealloc = (destructor)ResponseWatch_dealloc,
    .tp_traverse = (traverseproc)ResponseWatch_traverse,
    .tp_clear = (inquiry)ResponseWatch_clear,
    .tp_vectorcall_offset = offsetof(ResponseWatch, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_members = ResponseWatch_members,
};

static PyObject *mod_notice_responses_with(PyObject *Py_UNUSED(m), PyObject *hook) {
    if (!PyCallable_Check(hook)) {
        PyErr_SetString(PyExc_TypeError, "notice_responses_with() takes a callable");
        return NULL;
    }
    Py_XSETREF(notice_hook, Py_NewRef(hook));
    Py_RETURN_NONE;
}

/* ---- module-level pieces, for the tests ----------------------------------------------------- */

static PyObject *mod_glob_match(PyObject *Py_UNUSED(m), PyObject *args) {
    const char *pattern, *path;
    Py_ssize_t plen, slen;
    if (!PyArg_ParseTuple(args, "s#s#", &pattern, &plen, &path, &slen)) return NULL;
    return PyBool_FromLong(glob_match(pattern, plen, path, slen));
}

static PyObject *mod_globs_match(PyObject *Py_UNUSED(m), PyObject *args) {
    PyObject *patterns;
    const char *path;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "Os#", &patterns, &path, &len)) return NULL;
    GlobSet *set = compile_globs(patterns);
    if (set == NULL) return NULL;
    int matched = any_glob(set, path, len);
    free_globs(set);
    return PyBool_FromLong(matched);
}

static PyObject *mod_product_id(PyObject *Py_UNUSED(m), PyObject *arg) {
    Py_ssize_t len;
    const char *path = PyUnicode_AsUTF8AndSize(arg, &len);
    if (path == NULL) return NULL;
    int64_t pid = product_id(path, len);
    if (pid < 0) Py_RETURN_NONE;
    return PyLong_FromLongLong((long long)pid);
}

static PyObject *mod_canonical_ipv4(PyObject *Py_UNUSED(m), PyObject *arg) {
    Py_ssize_t len;
    const char *text = PyUnicode_AsUTF8AndSize(arg, &len);
    if (text == NULL) return NULL;
    uint32_t value;
    return PyBool_FromLong(canonical_ipv4(text, len, &value));
}

/* ---- the front door ------------------------------------------------------------------------ */

/* ShieldMiddleware.handle for a middleware with a lane: the awaitable that serves one ASGI
 * connection. A request the lane answers goes to the app with its scope and a response watch,
 * and the app's own coroutine is returned: no Python frame between the server and the app. Any
 * other answer (or none) goes to the middleware's Python `rest(scope, receive, send, now,
 * answer)`, which returns the awaitable that handles it. Scopes other than HTTP and websocket go
 * straight to the app. */
/* The front door's clock: `now` for a decision, and `*clock` the same time as a float object when
 * a call had to make one (else NULL). A refresh of the switchboard that has fallen due is started. */
static int front_now(Lane *self, double *now, PyObject **clock) {
    *clock = NULL;
    if (self->front_wall) {
        *now = wall_seconds();
    } else {
        if ((*clock = PyObject_CallNoArgs(self->front_clock)) == NULL) return -1;
        *now = PyFloat_AsDouble(*clock);
        if (*now == -1.0 && PyErr_Occurred()) {
            Py_CLEAR(*clock);
            return -1;
        }
    }
    if (self->armed && *now >= self->refresh_due) {
        if (*clock == NULL && (*clock = PyFloat_FromDouble(*now)) == NULL) return -1;
        /* The switchboard's refresh is due: rearm(now) starts it in the background and arms the
         * lane again while the switches stay quiet, so this request need not take the Python path
         * (which would decide it on the same cached switches). */
        PyObject *done = PyObject_CallOneArg(self->front_rearm, *clock);
        if (done == NULL) {
            Py_CLEAR(*clock);
            return -1;
        }
        Py_DECREF(done);
    }
    return 0;
}

/* The front door's decision on `scope`, at the front door's time (`*now`, and `*clock` as for
 * front_now). NULL on an error, with `*clock` released. */
static PyObject *front_decide(Lane *self, PyObject *scope, double *now, PyObject **clock) {
    if (front_now(self, now, clock) < 0) return NULL;
    self->fronting = 1;
    PyObject *answer = decide_armed(self, scope, *now);
    self->fronting = 0;
    if (answer == NULL) Py_CLEAR(*clock);
    return answer;
}

static int is_ours(PyObject *scope, int *ours) {
    PyObject *kind = PyObject_GetItem(scope, S_type);
    if (kind == NULL) return -1;
    *ours = kind == S_http || kind == S_websocket ||
            (PyUnicode_Check(kind) && (PyUnicode_Compare(kind, S_http) == 0 || PyUnicode_Compare(kind, S_websocket) == 0));
    Py_DECREF(kind);
    return 0;
}

/* The app called with what decide_armed() answered: a planned, quiet, allowed request's app scope
 * (`decision` and `group` its decision and route group) goes to the app, its response watched;
 * any other answer to the Python rest. Steals `clock` (may be NULL); `answer` stays the caller's. */
static PyObject *front_serve(Lane *self, PyObject *const *args, PyObject *answer, PyObject *decision, int group,
                             double now, PyObject *clock) {
    PyObject *served;
    if (PyDict_CheckExact(answer)) {
        Py_XDECREF(clock);
        PyObject *watched = PyTuple_GET_ITEM(self->front_watched, group);
        PyObject *watch = new_watch(&ResponseWatchType, args[2], watched, self->front_hear, self->front_hear_on,
                                    decision);
        if (watch == NULL) return NULL;
        PyObject *call[3] = {answer, args[1], watch};
        served = PyObject_Vectorcall(self->front_app, call, 3, NULL);
        Py_DECREF(watch);
        return served;
    }
    if (clock == NULL && (clock = PyFloat_FromDouble(now)) == NULL) return NULL;
    PyObject *call[5] = {args[0], args[1], args[2], clock, answer};
    served = PyObject_Vectorcall(self->front_rest, call, 5, NULL);
    Py_DECREF(clock);
    return served;
}

/* decide_ahead(scopes): decide these scopes now, before their apps are called, and leave each
 * answer in its scope for handle() to take (a scope that is not an http or websocket one is left
 * to handle()). The proxy's server calls it once a loop turn with the requests that arrived in it
 * (shieldware/proxy/serving.py, DecidingAhead), so their decisions run back to back while the
 * lane's code and tables are in the CPU's caches, not each between the interpreter's and the
 * kernel's work for another request. handle() then decides exactly as if it had been called for
 * each of them in turn at that moment; an answer made by another lane (one the policy reload
 * replaced) is dropped and the request decided afresh. */
static PyObject *Lane_decide_ahead(Lane *self, PyObject *scopes) {
    if (!PyList_CheckExact(scopes)) {
        PyErr_SetString(PyExc_TypeError, "decide_ahead takes a list of scopes");
        return NULL;
    }
    if (self->front_app == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_front() was not called");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(scopes); i++) {
        PyObject *scope = PyList_GET_ITEM(scopes, i);
        int ours = 0;
        if (!PyDict_CheckExact(scope) || is_ours(scope, &ours) < 0 || !ours) {
            PyErr_Clear(); /* not one handle() would decide: it is left to handle() */
            continue;
        }
        double now;
        PyObject *clock;
        PyObject *answer = front_decide(self, scope, &now, &clock);
        if (answer == NULL) return NULL;
        int plain = PyDict_CheckExact(answer);
        if (clock == NULL && (clock = PyFloat_FromDouble(now)) == NULL) {
            Py_DECREF(answer);
            return NULL;
        }
        if (answer == Py_None) {
            /* The Python path's: the front door's rest arms the lane again as handle() passes the
             * request on (ShieldMiddleware._after_front), before the next request is decided. So
             * here, before the next scope, or the turn's other requests would all miss the lane. */
            PyObject *done = PyObject_CallOneArg(self->front_rearm, clock);
            if (done == NULL) {
                Py_DECREF(answer);
                Py_DECREF(clock);
                return NULL;
            }
            Py_DECREF(done);
        }
        PyObject *group = PyLong_FromLong(plain ? self->front_group : 0);
        PyObject *ahead = group != NULL ? PyTuple_New(5) : NULL;
        if (ahead == NULL) {
            Py_XDECREF(group);
            Py_DECREF(answer);
            Py_DECREF(clock);
            return NULL;
        }
        /* (the lane, its answer, a planned answer's decision or None, its route group, the time) */
        PyTuple_SET_ITEM(ahead, 0, Py_NewRef((PyObject *)self));
        PyTuple_SET_ITEM(ahead, 1, answer);
        PyTuple_SET_ITEM(ahead, 2, Py_NewRef(plain ? self->front_decision : Py_None));
        PyTuple_SET_ITEM(ahead, 3, group);
        PyTuple_SET_ITEM(ahead, 4, clock);
        int failed = PyDict_SetItem(scope, S_ahead, ahead) < 0;
        Py_DECREF(ahead);
        if (failed) return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Lane_handle(Lane *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "handle(scope, receive, send)");
        return NULL;
    }
    if (self->front_app == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_front() was not called");
        return NULL;
    }
    PyObject *scope = args[0];
    if (PyDict_CheckExact(scope)) { /* decided ahead (decide_ahead): served with that answer */
        PyObject *ahead = PyDict_GetItemWithError(scope, S_ahead);
        if (ahead != NULL) {
            Py_INCREF(ahead);
            if (PyDict_DelItem(scope, S_ahead) < 0) {
                Py_DECREF(ahead);
                return NULL;
            }
            PyObject *served = NULL;
            if (PyTuple_GET_ITEM(ahead, 0) == (PyObject *)self) {
                self->served_ahead++;
                PyObject *clock = Py_NewRef(PyTuple_GET_ITEM(ahead, 4));
                served = front_serve(self, args, PyTuple_GET_ITEM(ahead, 1), PyTuple_GET_ITEM(ahead, 2),
                                     (int)PyLong_AsLong(PyTuple_GET_ITEM(ahead, 3)), PyFloat_AS_DOUBLE(clock), clock);
                Py_DECREF(ahead);
                return served;
            }
            Py_DECREF(ahead); /* another lane's (the policy was reloaded since): decided afresh */
        } else if (PyErr_Occurred()) {
            return NULL;
        }
    }
    int ours;
    if (is_ours(scope, &ours) < 0) return NULL;
    if (!ours) return PyObject_Vectorcall(self->front_app, args, 3, NULL);
    double now;
    PyObject *clock; /* the time as a float, made only for the calls that take it */
    PyObject *answer = front_decide(self, scope, &now, &clock);
    if (answer == NULL) return NULL;
    PyObject *served = front_serve(self, args, answer, self->front_decision, self->front_group, now, clock);
    Py_DECREF(answer);
    return served;
}

/* set_front(app, clock, rest, hear, watched, hear_on, rearm, scope_headers=True, scope_in_place=False):
 * `watched` holds, by route group index as the lane numbers them, the outcome headers a response
 * watch copies (None or a frozenset); rearm(now) is called when the switchboard's refresh falls due;
 * scope_headers false: the app writes the X-Shield-* lines itself, from decision.header_lines (the
 * proxy's forwarder);
 * scope_in_place true: the server makes a scope and state dict for each request and reads neither
 * back, so a planned request's app gets them changed rather than copied (the proxy's uvicorn). */
static PyObject *Lane_set_front(Lane *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"app", "clock", "rest", "hear", "watched", "hear_on", "rearm", "scope_headers",
                            "scope_in_place", NULL};
    PyObject *app, *clock, *rest, *hear, *watched, *hear_on, *rearm;
    int scope_headers = 1, scope_in_place = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOO!O!O|pp:set_front", names, &app, &clock, &rest, &hear,
                                     &PyTuple_Type, &watched, &PyFrozenSet_Type, &hear_on, &rearm, &scope_headers,
                                     &scope_in_place))
        return NULL;
    if (PyTuple_GET_SIZE(watched) != self->n_groups) {
        PyErr_Format(PyExc_ValueError, "watched names %zd route groups, the lane has %d", PyTuple_GET_SIZE(watched),
                     self->n_groups);
        return NULL;
    }
    Py_XSETREF(self->front_app, Py_NewRef(app));
    Py_XSETREF(self->front_clock, Py_NewRef(clock));
    self->front_wall = clock == time_time;
    self->front_lines = !scope_headers;
    self->front_in_place = scope_in_place;
    Py_XSETREF(self->front_rest, Py_NewRef(rest));
    Py_XSETREF(self->front_hear, Py_NewRef(hear));
    Py_XSETREF(self->front_watched, Py_NewRef(watched));
    Py_XSETREF(self->front_hear_on, Py_NewRef(hear_on));
    Py_XSETREF(self->front_rearm, Py_NewRef(rearm));
    Py_RETURN_NONE;
}

static PyObject *Lane_set_hear_on(Lane *self, PyObject *statuses) {
    if (!PyFrozenSet_Check(statuses)) {
        PyErr_SetString(PyExc_TypeError, "set_hear_on takes a frozenset of statuses");
        return NULL;
    }
    Py_XSETREF(self->front_hear_on, Py_NewRef(statuses));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"glob_match", mod_glob_match, METH_VARARGS, "glob_match(lower-cased pattern, path) -> bool: one glob, no trailing-slash allowance"},
    {"globs_match", mod_globs_match, METH_VARARGS, "globs_match(patterns, path) -> bool, as route groups match"},
    {"product_id", mod_product_id, METH_O, "product_id(path) -> int | None"},
    {"canonical_ipv4", mod_canonical_ipv4, METH_O, "canonical_ipv4(text) -> bool"},
    {"notice_responses_with", mod_notice_responses_with, METH_O,
     "notice_responses_with(notice_start): what a ResponseWatch calls for an unusual response start"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef lane_module = {PyModuleDef_HEAD_INIT, "_lane",
                                         "The compiled fast lane of shieldware's request path.", -1, module_methods};

PyMODINIT_FUNC PyInit__lane(void) {
    if (PyType_Ready(&LaneType) < 0 || PyType_Ready(&ResponseWatchType) < 0) return NULL;
#define INTERN(var, text)                                                                                          \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL;
    INTERN(S_type, "type");
    INTERN(S_http, "http");
    INTERN(S_websocket, "websocket");
    INTERN(S_path, "path");
    INTERN(S_method, "method");
    INTERN(S_headers, "headers");
    INTERN(S_client, "client");
    INTERN(S_scheme, "scheme");
    INTERN(S_http_version, "http_version");
    INTERN(S_evictions, "evictions");
    INTERN(S_state, "state");
    INTERN(S_shield, "shield");
    INTERN(S_ahead, "shieldware.decided_ahead");
    INTERN(S_start, "http.response.start");
    INTERN(S_status, "status");
    if ((S_ref_header = PyBytes_FromString("x-shield-ref")) == NULL) return NULL;
    if ((S_event_header = PyBytes_FromString("x-shield-event")) == NULL) return NULL;
    PyObject *time_module = PyImport_ImportModule("time");
    if (time_module == NULL) return NULL;
    time_time = PyObject_GetAttrString(time_module, "time");
    Py_DECREF(time_module);
    if (time_time == NULL) return NULL;
    PyObject *module = PyModule_Create(&lane_module);
    if (module == NULL) return NULL;
    /* PyModule_AddType names each by the last part of its tp_name: Lane, ResponseWatch */
    if (PyModule_AddType(module, &LaneType) < 0 || PyModule_AddType(module, &ResponseWatchType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
