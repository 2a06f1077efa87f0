/* _fastparse: the commonest shapes of Postfix log line, taken apart in C.

Every function here is a fast path of one Python function, named in its comment. It returns
exactly what that function returns, or None when the text is not in the plain shape it knows;
the caller then runs the Python function, which stays the reference (and the whole parser of a
plain-Python install). tests/unit/test_fastparse.py holds each function to its reference on every
line of the corpus and on generated text.

Only ASCII text is taken, and the payload parsers take only printable ASCII (no control
characters): there Python's regular-expression classes mean what they say in ASCII (\d is 0-9,
\s is a space, . is anything), so the hand-written scans below match the patterns they stand for.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static const char *
ascii_data(PyObject *text, Py_ssize_t *length)
{
    if (!PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text)) {
        return NULL;
    }
    *length = PyUnicode_GET_LENGTH(text);
    return (const char *)PyUnicode_DATA(text);
}

static const char *
printable_data(PyObject *text, Py_ssize_t *length)
{
    const char *data = ascii_data(text, length);
    if (data == NULL) {
        return NULL;
    }
    /* eight bytes at a time: all are below 0x80 here, so a byte below 0x20 or equal to 0x7f
       leaves its top bit set in one of these two words */
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    Py_ssize_t k = 0;
    for (; k + 8 <= *length; k += 8) {
        uint64_t w;
        memcpy(&w, data + k, 8);
        uint64_t del = w ^ (0x7f * ones);
        if ((((w - 0x20 * ones) & ~w) | ((del - ones) & ~del)) & high) {
            return NULL;
        }
    }
    for (; k < *length; k++) {
        if ((unsigned char)data[k] < 0x20 || data[k] == 0x7f) {
            return NULL;
        }
    }
    return data;
}

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int
is_alnum(char c)
{
    return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* A cursor over printable ASCII. Each step returns 0 where the pattern it stands for fails. */
typedef struct {
    const char *data;
    Py_ssize_t length;
    Py_ssize_t pos;
} Scan;

static int
take(Scan *s, const char *word)
{
    Py_ssize_t n = (Py_ssize_t)strlen(word);
    if (s->length - s->pos < n || memcmp(s->data + s->pos, word, (size_t)n) != 0) {
        return 0;
    }
    s->pos += n;
    return 1;
}

static int
starts(const Scan *s, const char *word)
{
    Py_ssize_t n = (Py_ssize_t)strlen(word);
    return s->length - s->pos >= n && memcmp(s->data + s->pos, word, (size_t)n) == 0;
}

/* _ADDR followed by ">": the address up to the first ">", when it holds no quote (a quoted
   local part may hold ">", which the Python pattern handles). Returns its end, or -1. */
static Py_ssize_t
address_end(const Scan *s)
{
    for (Py_ssize_t k = s->pos; k < s->length; k++) {
        if (s->data[k] == '>') {
            return k;
        }
        if (s->data[k] == '"') {
            return -1;
        }
    }
    return -1;
}

/* A run of at least one character among 0-9 and `also`; returns its end, or -1. */
static Py_ssize_t
number_end(const Scan *s, const char *also)
{
    Py_ssize_t k = s->pos;
    while (k < s->length && (is_digit(s->data[k]) || (s->data[k] && strchr(also, s->data[k])))) {
        k++;
    }
    return k > s->pos ? k : -1;
}

/* `word`, an address up to ">" (see address_end), then `sep`: the address's span in `span`;
   0 where the text is not that. */
static int
address_field(Scan *s, const char *word, Py_ssize_t span[2], const char *sep)
{
    if (!take(s, word)) {
        return 0;
    }
    span[0] = s->pos;
    span[1] = address_end(s);
    if (span[1] < 0) {
        return 0;
    }
    s->pos = span[1] + 1;
    return take(s, sep);
}

/* `word`, a number (see number_end), then `sep`: the number's span in `span`; 0 where the text
   is not that. */
static int
number_field(Scan *s, const char *word, const char *also, Py_ssize_t span[2], const char *sep)
{
    if (!take(s, word)) {
        return 0;
    }
    span[0] = s->pos;
    span[1] = number_end(s, also);
    if (span[1] < 0) {
        return 0;
    }
    s->pos = span[1];
    return take(s, sep);
}

/* Builds a tuple of `n` values; the references passed in are stolen, and a NULL among them
   (a failed allocation) fails the whole. */
static PyObject *
steal_tuple(Py_ssize_t n, PyObject **items)
{
    PyObject *tuple = NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (items[k] == NULL) {
            goto fail;
        }
    }
    tuple = PyTuple_New(n);
    if (tuple == NULL) {
        goto fail;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyTuple_SET_ITEM(tuple, k, items[k]);
    }
    return tuple;
fail:
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_XDECREF(items[k]);
    }
    return NULL;
}

#define SUB(text, a, b) PyUnicode_Substring((text), (a), (b))

/* Hosts and program tags repeat on nearly every line. Handing back the same string object, with
   its hash computed, saves hashing and comparing fresh copies in every dictionary they key later
   (the tag's parser, the queue's messages, the sessions, the per-host totals). A small table of
   the strings seen last, slotted by a hash of their bytes. */
#define RECENT_SLOTS 64
typedef PyObject *Recent[RECENT_SLOTS];
static Recent recent_hosts, recent_programs;

static PyObject *
recent(Recent table, PyObject *text, Py_ssize_t start, Py_ssize_t end)
{
    const char *d = (const char *)PyUnicode_DATA(text) + start;
    Py_ssize_t n = end - start;
    /* a few bytes are enough to keep a handful of names apart; a clash only costs a copy */
    size_t h = 0;
    if (n > 0) {
        h = (size_t)n * 7 + (unsigned char)d[0] * 3 + (unsigned char)d[n / 2] * 5 + (unsigned char)d[n - 1];
    }
    PyObject **slot = &table[h % RECENT_SLOTS];
    if (*slot != NULL && PyUnicode_GET_LENGTH(*slot) == n && memcmp(PyUnicode_DATA(*slot), d, (size_t)n) == 0) {
        return Py_NewRef(*slot);
    }
    PyObject *fresh = SUB(text, start, end);
    if (fresh == NULL || PyObject_Hash(fresh) == -1) {
        Py_XDECREF(fresh);
        return NULL;
    }
    Py_XSETREF(*slot, Py_NewRef(fresh));
    return fresh;
}

/* LineParser.parse's first branch (lines.py): a classic stamp whose minute is known in `stamps`,
   then "host program[pid]: payload". Returns (ts, host, program, pid, payload). */
static PyObject *
classic_header(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "classic_header(text, stamps, month)");
        return NULL;
    }
    PyObject *text = args[0], *stamps = args[1], *month = args[2];
    Py_ssize_t n, month_length;
    const char *d = ascii_data(text, &n);
    const char *m = ascii_data(month, &month_length);
    if (d == NULL || m == NULL || !PyDict_Check(stamps) || n < 16 || month_length != 3) {
        Py_RETURN_NONE;
    }
    if (d[15] != ' ' || d[12] != ':' || memcmp(d, m, 3) != 0 || !is_digit(d[13]) || !is_digit(d[14])) {
        Py_RETURN_NONE;
    }
    /* text[16:].split(" ", 2) into host, tag and payload */
    const char *space = memchr(d + 16, ' ', (size_t)(n - 16));
    if (space == NULL) {
        Py_RETURN_NONE;
    }
    Py_ssize_t host_end = space - d;
    space = memchr(d + host_end + 1, ' ', (size_t)(n - host_end - 1));
    if (space == NULL) {
        Py_RETURN_NONE;
    }
    Py_ssize_t tag_start = host_end + 1, tag_end = space - d;
    if (tag_end - tag_start < 2 || d[tag_end - 2] != ']' || d[tag_end - 1] != ':') {
        Py_RETURN_NONE;
    }
    const char *bracket = memchr(d + tag_start, '[', (size_t)(tag_end - tag_start));
    if (bracket == NULL || bracket - d == tag_start) {
        Py_RETURN_NONE;
    }
    Py_ssize_t pid_start = bracket - d + 1;

    /* the minute's key, "Nov 28 19:45": the same string object as the line before's while the
       minute lasts, so that its hash is computed once a minute */
    static PyObject *last_key = NULL;
    if (last_key == NULL || memcmp(PyUnicode_DATA(last_key), d, 12) != 0) {
        PyObject *key = SUB(text, 0, 12);
        if (key == NULL) {
            return NULL;
        }
        Py_XSETREF(last_key, key);
    }
    PyObject *base = PyDict_GetItemWithError(stamps, last_key); /* borrowed */
    if (base == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    if (!PyFloat_CheckExact(base)) {
        Py_RETURN_NONE;
    }
    double second = (double)((d[13] - '0') * 10 + (d[14] - '0'));
    PyObject *items[5] = {
        PyFloat_FromDouble(PyFloat_AS_DOUBLE(base) + second),
        recent(recent_hosts, text, 16, host_end),
        recent(recent_programs, text, tag_start, pid_start - 1),
        SUB(text, pid_start, tag_end - 2),
        SUB(text, tag_end + 1, n),
    };
    return steal_tuple(5, items);
}

/* split_qid (events/postfix.py): "QID: rest" with a short hex, long or NOQUEUE queue ID.
   Returns (qid, rest). */
static PyObject *
split_qid(PyObject *module, PyObject *payload)
{
    Py_ssize_t n;
    const char *d = ascii_data(payload, &n);
    if (d == NULL) {
        Py_RETURN_NONE;
    }
    /* payload.find(": ", 5, 26) */
    Py_ssize_t end = n < 26 ? n : 26, i = -1;
    for (Py_ssize_t k = 5; k + 1 < end; k++) {
        if (d[k] == ':' && d[k + 1] == ' ') {
            i = k;
            break;
        }
    }
    if (i < 0) {
        Py_RETURN_NONE;
    }
    int found = i >= 6;
    for (Py_ssize_t k = 0; found && k < i; k++) {
        found = is_digit(d[k]) || (d[k] >= 'A' && d[k] <= 'F');
    }
    if (!found && i == 7 && memcmp(d, "NOQUEUE", 7) == 0) {
        found = 1;
    }
    if (!found && i >= 13) {
        /* _LONG_QID_RE on an all-alphanumeric ID: a "z" after ten or more characters and before
           two or more */
        int alnum = 1;
        for (Py_ssize_t k = 0; alnum && k < i; k++) {
            alnum = is_alnum(d[k]);
        }
        for (Py_ssize_t k = 10; alnum && !found && k <= i - 3; k++) {
            found = d[k] == 'z';
        }
    }
    if (!found) {
        Py_RETURN_NONE;
    }
    PyObject *items[2] = {SUB(payload, 0, i), SUB(payload, i + 2, n)};
    return steal_tuple(2, items);
}

/* _DELIVERY_RE and the delay's float (parse_delivery, events/postfix.py): the text after the
   queue ID. Returns (to, orig_to, relay, delay, delays, dsn, status, reply), "" for a part
   not written. */
static PyObject *
delivery(PyObject *module, PyObject *rest)
{
    Scan s = {0};
    Py_ssize_t to[2], orig[2] = {0, 0}, relay[2], conn[2], delay[2], delays[2] = {0, 0}, dsn[2] = {0, 0};
    s.data = printable_data(rest, &s.length);
    if (s.data == NULL || !address_field(&s, "to=<", to, ", ")) {
        Py_RETURN_NONE;
    }
    if (starts(&s, "orig_to=<") && !address_field(&s, "orig_to=<", orig, ", ")) {
        Py_RETURN_NONE;
    }
    if (!take(&s, "relay=")) {
        Py_RETURN_NONE;
    }
    relay[0] = s.pos;
    const char *comma = memchr(s.data + s.pos, ',', (size_t)(s.length - s.pos));
    if (comma == NULL || comma - s.data == relay[0]) {
        Py_RETURN_NONE;
    }
    relay[1] = s.pos = comma - s.data;
    if (!take(&s, ", ")) {
        Py_RETURN_NONE;
    }
    if (starts(&s, "conn_use=") && !number_field(&s, "conn_use=", "", conn, ", ")) {
        Py_RETURN_NONE;
    }
    if (!number_field(&s, "delay=", ".", delay, ", ")) {
        Py_RETURN_NONE;
    }
    if (starts(&s, "delays=") && !number_field(&s, "delays=", "./", delays, ", ")) {
        Py_RETURN_NONE;
    }
    if (starts(&s, "dsn=") && !number_field(&s, "dsn=", ".", dsn, ", ")) {
        Py_RETURN_NONE;
    }
    if (!take(&s, "status=")) {
        Py_RETURN_NONE;
    }
    Py_ssize_t status_start = s.pos;
    while (s.pos < s.length && s.data[s.pos] != ' ') {
        s.pos++;
    }
    Py_ssize_t status_end = s.pos;
    if (status_end == status_start) {
        Py_RETURN_NONE;
    }
    /* " (" then the reply up to the last ")" */
    Py_ssize_t reply_start = 0, reply_end = 0;
    if (starts(&s, " (")) {
        for (Py_ssize_t k = s.length - 1; k >= s.pos + 2; k--) {
            if (s.data[k] == ')') {
                reply_start = s.pos + 2;
                reply_end = k;
                break;
            }
        }
    }

    PyObject *delay_text = SUB(rest, delay[0], delay[1]);
    if (delay_text == NULL) {
        return NULL;
    }
    PyObject *seconds = PyFloat_FromString(delay_text);
    Py_DECREF(delay_text);
    if (seconds == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError)) {
            return NULL;
        }
        PyErr_Clear(); /* "1..2": not a number Postfix wrote; the Python path decides */
        Py_RETURN_NONE;
    }
    PyObject *items[8] = {
        SUB(rest, to[0], to[1]),
        SUB(rest, orig[0], orig[1]),
        SUB(rest, relay[0], relay[1]),
        seconds,
        SUB(rest, delays[0], delays[1]),
        SUB(rest, dsn[0], dsn[1]),
        SUB(rest, status_start, status_end),
        SUB(rest, reply_start, reply_end),
    };
    return steal_tuple(8, items);
}

static PyObject *
integer(PyObject *text, Py_ssize_t start, Py_ssize_t end)
{
    if (end - start <= 18) {
        const char *d = (const char *)PyUnicode_DATA(text);
        long long value = 0;
        for (Py_ssize_t k = start; k < end; k++) {
            value = value * 10 + (d[k] - '0');
        }
        return PyLong_FromLongLong(value);
    }
    PyObject *digits = SUB(text, start, end);
    if (digits == NULL) {
        return NULL;
    }
    PyObject *value = PyLong_FromUnicodeObject(digits, 10);
    Py_DECREF(digits);
    return value;
}

/* _QUEUED_RE and its two ints (parse_qmgr, events/postfix.py): "from=<sender>, size=N, nrcpt=N".
   Returns (sender, size, nrcpt). */
static PyObject *
queued(PyObject *module, PyObject *rest)
{
    Scan s = {0};
    Py_ssize_t sender[2], size[2], nrcpt[2];
    s.data = printable_data(rest, &s.length);
    if (s.data == NULL || !address_field(&s, "from=<", sender, ", ") || !number_field(&s, "size=", "", size, ", ")
        || !number_field(&s, "nrcpt=", "", nrcpt, "")) {
        Py_RETURN_NONE;
    }
    PyObject *items[3] = {
        SUB(rest, sender[0], sender[1]),
        integer(rest, size[0], size[1]),
        integer(rest, nrcpt[0], nrcpt[1]),
    };
    return steal_tuple(3, items);
}

/* _CLIENT_RE (parse_smtpd, events/postfix.py): "client=host[ip]:port, more". Returns
   (host, ip, the rest after the port). */
static PyObject *
client(PyObject *module, PyObject *rest)
{
    Scan s = {0};
    s.data = printable_data(rest, &s.length);
    if (s.data == NULL || !take(&s, "client=")) {
        Py_RETURN_NONE;
    }
    Py_ssize_t host_start = s.pos;
    while (s.pos < s.length && s.data[s.pos] != ' ' && s.data[s.pos] != '[') {
        s.pos++;
    }
    Py_ssize_t host_end = s.pos;
    if (!take(&s, "[")) {
        Py_RETURN_NONE;
    }
    Py_ssize_t ip_start = s.pos;
    const char *bracket = memchr(s.data + s.pos, ']', (size_t)(s.length - s.pos));
    if (bracket == NULL) {
        Py_RETURN_NONE;
    }
    Py_ssize_t ip_end = bracket - s.data;
    s.pos = ip_end + 1;
    if (s.pos + 1 < s.length && s.data[s.pos] == ':' && is_digit(s.data[s.pos + 1])) {
        s.pos++;
        while (s.pos < s.length && is_digit(s.data[s.pos])) {
            s.pos++;
        }
    }
    PyObject *items[3] = {
        SUB(rest, host_start, host_end),
        SUB(rest, ip_start, ip_end),
        SUB(rest, s.pos, s.length),
    };
    return steal_tuple(3, items);
}

static PyMethodDef methods[] = {
    {"classic_header", (PyCFunction)(void (*)(void))classic_header, METH_FASTCALL,
     "LineParser.parse's fast path: (ts, host, program, pid, payload) or None."},
    {"split_qid", split_qid, METH_O, "split_qid's common cases: (qid, rest) or None."},
    {"delivery", delivery, METH_O, "A delivery line's fields after the queue ID, or None."},
    {"queued", queued, METH_O, "qmgr's from=<>, size=, nrcpt= fields, or None."},
    {"client", client, METH_O, "smtpd's client=host[ip] fields, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "postlens._fastparse",
    "Fast paths in C for the commonest Postfix log lines (see the Python functions they mirror).",
    0, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fastparse(void)
{
    return PyModule_Create(&module_def);
}
