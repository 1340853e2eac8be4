#!/usr/bin/env python3
"""The date strings test/fuzz/dates-in-server.sh puts through pcqual's real
date path in a running server, and the check of what came back.

  date_cases.py make DIR [--count N] [--seed S]
      writes DIR/cases.csv (n, text, tenant, position, expected), one
      emulator fixture per tenant (DIR/fixture-<tenant>.json, a
      /_emulator/customer body) and DIR/run.sql, the psql script.
  date_cases.py check DIR
      reads what run.sql wrote (DIR/results.csv, DIR/backend.csv) and the
      psql session's stderr (DIR/stderr.txt) and reports every difference.

The cases: every vettingCreatedDate / vettingCreateDate string of the
fuzzer's corpus and regressions (test/fuzz/corpus, test/fuzz/regressions),
every short input of them taken whole as a date (as the fuzzer also does),
a fixed list of adversarial strings, N generated strings of Partner Center's
shape with fields in and out of range, and mutations of such strings.  No
case has a NUL (cJSON ends a string there) or a lone surrogate (no UTF-8
for it, and the emulator could not serve the fixture).

For each case three readings must agree, under every session setting
run.sql uses (TimeZone and DateStyle vary; the result must not):
  - pcqual's: vetting_created_date of the row pc_qualifications /
    pc_fetch_qualifications returned for it (the real ParseDateTime,
    DecodeDateTime and tm2timestamp, called by src/parse.c);
  - the backend's own timestamptz input of the same text, for a text of
    Partner Center's shape (backend.csv; 22007/22008/22009 mean none);
  - an independent one written here ("expected"): the shape, then
    PostgreSQL's documented rules (year 1-9999 with no year 0, day within
    the month with Gregorian leap years, hour <= 24, minute <= 59,
    second <= 60, time of day <= 24:00:00, fraction rounded to microseconds
    half to even), then the zone offset.
A case without a date must also have had exactly one WARNING, SQLSTATE
22007, naming its customer and its text as pcq_quotable_text quotes it, and
a DETAIL naming its qualification; no other WARNING or ERROR may appear.
"""
import csv
import datetime
import json
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CASES_PER_TENANT = 600
TENANT_FORMAT = "da7e5000-0000-4000-8000-{:012d}"
MAX_QUOTED_TEXT = 300           # PCQ_MAX_QUOTED_TEXT in src/pcqual.h
EPOCH_2000 = datetime.date(2000, 1, 1).toordinal()
USECS_PER_DAY = 86400 * 1000000

# Session settings of run.sql: (name, TimeZone, DateStyle, function)
SETTINGS = [
    ("utc-iso", "UTC", "ISO, MDY", "single"),
    ("kathmandu-sql-dmy", "Asia/Kathmandu", "SQL, DMY", "bulk"),
    ("new-york-german", "America/New_York", "German", "bulk"),
    ("kiritimati-postgres-ymd", "Pacific/Kiritimati", "Postgres, YMD", "bulk"),
]

SHAPE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
                   r"(\.[0-9]{1,7})?(Z|([+-])([0-9]{2}):([0-9]{2}))", re.ASCII)


# ---- the independent reading ----

def expected(text):
    """Microseconds since 2000-01-01 00:00:00 UTC, or None: no date."""
    m = SHAPE.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    fraction = m.group(7)
    if m.group(8) == "Z":
        offset = 0
    else:
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 14 or om > 59:
            return None
        offset = (oh * 3600 + om * 60) * (1 if m.group(9) == "+" else -1)
    if y < 1 or not 1 <= mo <= 12:
        return None
    try:
        day = datetime.date(y, mo, d).toordinal()
    except ValueError:
        return None
    # strtod, times 1e6, rint: Python's float and round() are the same
    usec = round(float(fraction) * 1000000) if fraction else 0
    if h > 24 or mi > 59 or s > 60 or usec > 1000000:
        return None
    if h == 24 and (mi > 0 or s > 0 or usec > 0):
        return None
    time = ((h * 60 + mi) * 60 + s) * 1000000 + usec
    if time > USECS_PER_DAY:
        return None
    return (day - EPOCH_2000) * USECS_PER_DAY + time - offset * 1000000


def quotable(text):
    """pcq_quotable_text of a valid UTF-8 text, as pcqual's WARNING quotes it."""
    raw = text.encode("utf-8")
    keep = text
    if len(raw) > MAX_QUOTED_TEXT:
        keep, size = "", 0
        for ch in text:
            n = len(ch.encode("utf-8"))
            if size + n > MAX_QUOTED_TEXT:
                break
            keep += ch
            size += n
    out = []
    for ch in keep:
        c = ord(ch)
        if (c < 0x20 or c == 0x7F or 0x80 <= c <= 0x9F or 0x2028 <= c <= 0x202E
                or 0x2066 <= c <= 0x2069):
            out.append("".join("\\x%02X" % b for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out) + ("..." if len(keep) < len(text) else "")


# ---- the cases ----

def usable(text):
    if "\0" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def date_values(doc):
    """Every vettingCreatedDate / vettingCreateDate string in a JSON document
    (any case of the key, as cJSON_GetObjectItem finds it), in document
    order.  Iterative: the corpus holds documents nested deeper than
    Python's recursion limit (json.loads takes them; Python 3.13's frames
    are dearer)."""
    stack = [iter([(None, doc)])]
    while stack:
        pair = next(stack[-1], None)
        if pair is None:            # that level is done
            stack.pop()
            continue
        key, value = pair
        if (key is not None and key.lower() in ("vettingcreateddate", "vettingcreatedate")
                and isinstance(value, str)):
            yield value
        if isinstance(value, dict):
            stack.append(iter(value.items()))
        elif isinstance(value, list):
            stack.append((None, item) for item in value)


def from_fuzzer():
    found = []
    for sub in ("corpus", "regressions"):
        d = os.path.join(HERE, sub)
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if len(data) <= 80:
                found.append(("%s/%s" % (sub, name), text))
            try:
                doc = json.loads(text)
            except (ValueError, RecursionError):
                continue
            for value in date_values(doc):
                found.append(("%s/%s" % (sub, name), value))
    return found


def fixed():
    base = "2024-02-29T12:34:56"
    cases = [
        "", " ", "Z", "T", "2024", "2024-02-29", "2024-02-29T", "2024-02-29T12:34",
        "2024-02-29T12:34Z", base, base + "Z", "2024-02-29t12:34:56Z", base + "z",
        "2024-02-29 12:34:56Z", " " + base + "Z", base + "Z ", base + "Z\n", "\t" + base + "Z",
        base + " Z", "2024-02-29T 12:34:56Z", base + ".Z", base + ",5Z", base + "..5Z",
        base + ".5.5Z", base + "Z+01:00", base + "+00:00Z",
        # fractions: 1 to 8 digits, rounding at the 7th, half to even
        "2024-12-31T23:59:59.9999995Z", "2024-12-31T23:59:59.9999994Z",
        "2024-12-31T23:59:59.9999999Z", "2024-01-01T00:00:00.0000005Z",
        "2024-01-01T00:00:00.0000015Z", "2024-01-01T00:00:00.0000025Z",
        "2024-01-01T00:00:00.5000005Z", "2024-01-01T00:00:00.0000000Z",
        # leap seconds, 24:00, out of range times
        "2016-12-31T23:59:60Z", "2016-12-31T23:59:60.5Z", "2016-12-31T23:59:60.0000004Z",
        "2016-12-31T23:59:61Z", "2024-01-01T24:00:00Z", "2024-01-01T24:00:00.0000001Z",
        "2024-01-01T24:00:00.00000004Z", "2024-01-01T24:00:00.0000004Z",
        "2024-01-01T24:00:01Z", "2024-01-01T24:01:00Z", "2024-01-01T25:00:00Z",
        "2024-01-01T12:60:00Z", "2024-01-01T12:00:60.9999999Z", "2024-01-01T99:99:99Z",
        # dates
        "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2000-02-29T00:00:00Z",
        "2100-02-29T00:00:00Z", "0000-01-01T00:00:00Z", "0000-12-31T23:59:59+14:00",
        "0001-01-01T00:00:00-14:00", "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.9999999-14:00", "9999-12-31T24:00:00-14:59",
        "9999-12-31T23:59:60.9999995+14:59", "2024-00-10T00:00:00Z", "2024-13-10T00:00:00Z",
        "2024-04-31T00:00:00Z", "2024-04-00T00:00:00Z", "2024-01-32T00:00:00Z",
        "1582-10-10T00:00:00Z", "1970-01-01T00:00:00Z",
        # zones
        base + "+00:00", base + "-00:00", base + "+14:00", base + "+14:59", base + "-14:59",
        base + "+15:00", base + "-15:00", base + "+14:60", base + "+05:30", base + "+0530",
        base + "+05", base + "+05:30:00", base + "+5:30", base + "UTC", base + " UTC",
        base + "GMT+1", base + "EST", base + "PST8PDT", base + " America/New_York",
        base + "Europe/Berlin", base + "\u221205:00", base + "+\u0660\u0665:\u0663\u0660",
        base + "+05\uff1a30", base + "+99:99", base + "-99:00",
        # eras, years outside four digits
        base + "Z BC", "0044-03-15T12:00:00 BC", "0044-03-15T12:00:00Z BC", "-0044-03-15T12:00:00Z",
        "+2024-02-29T12:34:56Z", "44-03-15T12:00:00Z", base + " AD", base + "ZBC",
        "10000-01-01T00:00:00Z", "294276-12-31T23:59:59Z", "294277-01-01T00:00:00Z",
        "-4713-11-24T00:00:00Z", "4714-11-24T00:00:00Z BC", "4714-11-23T00:00:00 BC",
        "99999999999999999999-01-01T00:00:00Z",
        # words and other formats the backend (not Partner Center) knows
        "infinity", "-infinity", "+infinity", "Infinity", "epoch", "now", "today", "tomorrow",
        "yesterday", "allballs", "NaN", "null", "true", "0", "-1", "1e999", "J2451187",
        "2024-060", "2024-W09-4", "20240229T123456Z", "2024-02-29T123456Z",
        base + ".789+05:30[Asia/Kolkata]", "Thu, 29 Feb 2024 12:34:56 GMT", "2/29/2024",
        "29.02.2024", "Feb 29 2024", "2024-Feb-29T12:34:56Z", "1709210096", "2024-02-29T12:34:56.789",
        "2024-02-29T12:34:56 +05:30", "2024-02-29 12:34:56+05:30",
        # non-ASCII: digits of other scripts, look-alikes, invisible characters
        "\uff12\uff10\uff12\uff14-\uff10\uff12-\uff12\uff19T\uff11\uff12:\uff13\uff14:\uff15\uff16Z",
        "\u0662\u0660\u0662\u0664-02-29T12:34:56Z", "\u0968\u0966\u0968\u096a-02-29T12:34:56Z",
        "2024\u201002\u201029T12:34:56Z", "2024-02-29\u00a012:34:56Z", base + "\uff3a",
        base + "Z\u200b", "\ufeff" + base + "Z", "\u202e" + base + "Z", base + "Z\u0301",
        "2024-02-29\u042212:34:56Z", "\U0001F4C5", "\u00e9t\u00e9", base + ".\u0665Z",
        # controls
        "\x01", base + "\x7fZ", "\u0085" + base + "Z", base + "Z\u2028", "\x1b[31m" + base + "Z",
        "\r\n",
        # things a message must not pass on raw
        base + "Z'; DROP TABLE x; --", "%s%s%n%d", "\\x00", "\\", "\"", "${HOME}",
    ]
    # long texts: under, at and past parse.c's 64 bytes and the quoting limit
    for n in (44, 45, 63, 64, 200, 299, 300, 301, 1000, 5000):
        cases.append((base + ".1Z" + "0" * n)[:n])
        cases.append(base + "." + "9" * max(0, n - 21) + "Z")
    cases += ["9" * 63, "9" * 64, "\u00e9" * 149, "\u00e9" * 150, "\u00e9" * 151,
              "\U0001F4C5" * 80, "a" * 20000, base + "Z" + " " * 100]
    return cases


def shaped(rng):
    """A string of Partner Center's shape, fields in and out of range."""
    def pick(edges, width):
        if rng.random() < 0.6:
            return rng.choice(edges)
        return "%0*d" % (width, rng.randrange(10 ** width))

    if rng.random() < 0.7:
        # every field within its range: the cases that reach a timestamp
        y = rng.choice([1, 2, 1582, 1900, 1970, 2000, 2024, 2100, 9998, 9999, rng.randrange(1, 10000)])
        mo = rng.randrange(1, 13)
        d = rng.randrange(1, 32)
        h, mi, s = rng.randrange(25), rng.randrange(60), rng.randrange(61)
        parts = ["%04d" % y, "%02d" % mo, "%02d" % d, "%02d" % h, "%02d" % mi, "%02d" % s]
    else:
        parts = [pick(["0000", "0001", "1900", "2000", "2024", "9999"], 4),
                 pick(["00", "01", "02", "12", "13"], 2),
                 pick(["00", "01", "28", "29", "30", "31", "32"], 2),
                 pick(["00", "23", "24", "25"], 2),
                 pick(["00", "59", "60"], 2),
                 pick(["00", "59", "60", "61"], 2)]
    text = "%s-%s-%sT%s:%s:%s" % tuple(parts)
    if rng.random() < 0.6:
        digits = rng.choice([1, 2, 3, 6, 7, 7, 7, rng.randrange(1, 9)])
        kind = rng.random()
        if kind < 0.2:
            frac = "9" * digits
        elif kind < 0.3:
            frac = "0" * (digits - 1) + "5"
        else:
            frac = "".join(rng.choice("0123456789") for _ in range(digits))
        text += "." + frac
    if rng.random() < 0.3:
        text += "Z"
    else:
        hh = pick(["00", "01", "05", "12", "13", "14", "15"], 2)
        mm = pick(["00", "30", "45", "59", "60"], 2)
        text += rng.choice("+-") + hh + ":" + mm
    return text


MUTATION_CHARS = list("0123456789-:.TtZz+ ,/") + [
    "\u0665", "\uff10", "\u00a0", "\u2212", "\u00e9", "\U0001F4C5", "\x01", "\u200b", "\u202e"]


def mutated(rng, text):
    chars = list(text)
    for _ in range(rng.randrange(1, 4)):
        op = rng.random()
        at = rng.randrange(len(chars) + 1)
        if op < 0.4 and at < len(chars):
            chars[at] = rng.choice(MUTATION_CHARS)
        elif op < 0.6 and at < len(chars):
            del chars[at]
        elif op < 0.8:
            chars.insert(at, rng.choice(MUTATION_CHARS))
        elif op < 0.9:
            chars = chars[:at]
        else:
            start = rng.randrange(len(chars) + 1)
            chars[at:at] = chars[start:start + rng.randrange(1, 8)]
    return "".join(chars)


def make_cases(count, seed):
    rng = random.Random(seed)
    cases = [(origin, text) for origin, text in from_fuzzer()]
    cases += [("fixed", text) for text in fixed()]
    for _ in range(count * 6 // 10):
        cases.append(("generated", shaped(rng)))
    for _ in range(count - count * 6 // 10):
        cases.append(("mutated", mutated(rng, shaped(rng))))
    seen = set()
    unique = []
    for origin, text in cases:
        if usable(text) and text not in seen:
            seen.add(text)
            unique.append((origin, text))
    return unique


def sql_literal(s):
    return "'" + s.replace("'", "''") + "'"


def make(directory, count, seed):
    cases = make_cases(count, seed)
    tenants = []
    with open(os.path.join(directory, "cases.csv"), "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        for i in range(0, len(cases), CASES_PER_TENANT):
            tenant = TENANT_FORMAT.format(len(tenants) + 1)
            tenants.append(tenant)
            items = []
            for pos, (origin, text) in enumerate(cases[i:i + CASES_PER_TENANT], 1):
                n = i + pos
                # both spellings of the key the service has used
                key = "vettingCreatedDate" if n % 2 else "vettingCreateDate"
                items.append({"qualification": "d%d" % n, key: text})
                want = expected(text)
                out.writerow([n, text, tenant, pos, origin, "" if want is None else want])
            with open(os.path.join(directory, "fixture-%s.json" % tenant), "w") as fx:
                json.dump({"qualifications": items}, fx)
    path = lambda name: sql_literal(os.path.join(directory, name))
    tenant_array = "ARRAY[%s]::uuid[]" % ", ".join(sql_literal(t) for t in tenants)
    lines = [
        "\\set ON_ERROR_STOP 1",
        "\\set VERBOSITY verbose",
        "SET client_min_messages = warning;",
        "CREATE TEMP TABLE date_case (n int PRIMARY KEY, text text NOT NULL, tenant uuid NOT NULL,",
        "    pos int NOT NULL, origin text, expected bigint);",
        "\\copy date_case FROM %s WITH (FORMAT csv, FORCE_NOT_NULL (text))" % path("cases.csv"),
        "CREATE TEMP TABLE date_result (setting text, tenant uuid, pos bigint, qualification text,",
        "    got timestamptz, succeeded boolean, error_sqlstate text);",
        "-- The backend's own reading of a text of Partner Center's shape.",
        "CREATE FUNCTION pg_temp.backend_reading(s text) RETURNS timestamptz LANGUAGE plpgsql AS $$",
        "BEGIN",
        "    IF s !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,7})?"
        "(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])$' THEN",
        "        RETURN NULL;",
        "    END IF;",
        "    RETURN s::timestamptz;",
        "EXCEPTION WHEN SQLSTATE '22007' OR SQLSTATE '22008' OR SQLSTATE '22009' THEN",
        "    RETURN NULL;",
        "END",
        "$$;",
    ]
    for name, zone, style, function in SETTINGS:
        lines += [
            "\\warn '=== setting %s'" % name,
            "SET TimeZone = %s;" % sql_literal(zone),
            "SET DateStyle = %s;" % sql_literal(style),
        ]
        if function == "single":
            lines.append(
                "INSERT INTO date_result SELECT %s, t, q.pos, q.qualification, q.vetting_created_date, true, NULL"
                " FROM unnest(%s) AS t, LATERAL pc_qualifications(t) WITH ORDINALITY"
                " AS q(qualification, vetting_status, vetting_reason, vetting_created_date, pos);"
                % (sql_literal(name), tenant_array))
        else:
            lines.append(
                "INSERT INTO date_result SELECT %s, f.customer_tenant_id,"
                " row_number() OVER (PARTITION BY f.customer_tenant_id ORDER BY f.ordinality),"
                " f.qualification, f.vetting_created_date, f.succeeded, f.error_sqlstate"
                " FROM pc_fetch_qualifications(%s) WITH ORDINALITY AS f;"
                % (sql_literal(name), tenant_array))
    lines += [
        "\\warn '=== end'",
        "SET TimeZone = 'UTC';",
        "\\copy (SELECT setting, tenant, pos, qualification, CASE WHEN got IS NOT NULL THEN"
        " ((extract(epoch FROM got) - 946684800) * 1000000)::bigint END, succeeded, error_sqlstate"
        " FROM date_result ORDER BY setting, tenant, pos) TO %s WITH (FORMAT csv)" % path("results.csv"),
        "\\copy (SELECT n, ((extract(epoch FROM pg_temp.backend_reading(text)) - 946684800)"
        " * 1000000)::bigint FROM date_case ORDER BY n) TO %s WITH (FORMAT csv)" % path("backend.csv"),
        "SELECT 'the backend is still there' AS alive;",
    ]
    with open(os.path.join(directory, "run.sql"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    origins = {}
    for origin, _ in cases:
        kind = origin.split("/")[0]
        origins[kind] = origins.get(kind, 0) + 1
    print("%d date strings (%s) for %d customers" % (
        len(cases), ", ".join("%d %s" % (v, k) for k, v in sorted(origins.items())), len(tenants)))
    for t in tenants:
        print("tenant", t)


# ---- the check ----

WARNING = re.compile(r'^WARNING:  22007: vetting date "(.*)" of customer ([0-9a-f-]{36}) is not ISO 8601$')
PSQL_PREFIX = re.compile(r"^psql:[^:]*:[0-9]+: ")       # psql -f names the script's line
DETAIL = re.compile(r"^DETAIL:  vetting_created_date of its (d[0-9]+) qualification is NULL\.$")


def read_warnings(path):
    """{setting: [(tag, quoted text, tenant)]}, and the lines that are not such warnings."""
    warnings, stray = {}, []
    setting = None
    pending = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f.read().split("\n"):
            line = PSQL_PREFIX.sub("", line)
            if line.startswith("=== "):
                setting = line[len("=== setting "):] if line.startswith("=== setting ") else None
                warnings.setdefault(setting, [])
                continue
            m = WARNING.match(line)
            if m:
                if pending:
                    stray.append("a WARNING without its DETAIL: " + pending[0])
                pending = (m.group(1), m.group(2))
                continue
            m = DETAIL.match(line)
            if m and pending:
                warnings.setdefault(setting, []).append((m.group(1), pending[0], pending[1]))
                pending = None
                continue
            if line.startswith("LOCATION:  ") or line == "":
                continue
            stray.append(line)
    if pending:
        stray.append("a WARNING without its DETAIL: " + pending[0])
    return warnings, stray


def check(directory):
    problems = []

    def problem(text):
        if len(problems) < 60:
            problems.append(text)
        elif len(problems) == 60:
            problems.append("(more left out)")

    cases = {}
    with open(os.path.join(directory, "cases.csv"), newline="", encoding="utf-8") as f:
        for n, text, tenant, pos, origin, want in csv.reader(f):
            cases[int(n)] = (text, tenant, int(pos), origin, int(want) if want else None)
    backend = {}
    with open(os.path.join(directory, "backend.csv"), newline="", encoding="utf-8") as f:
        for n, usec in csv.reader(f):
            backend[int(n)] = int(usec) if usec else None
    results = {}
    with open(os.path.join(directory, "results.csv"), newline="", encoding="utf-8") as f:
        for setting, tenant, pos, tag, usec, succeeded, sqlstate in csv.reader(f):
            if succeeded != "t" or not tag:
                problem("%s: customer %s failed (%s) or gave a row without a qualification"
                        % (setting, tenant, sqlstate))
                continue
            n = int(tag[1:])
            results.setdefault(setting, {})
            if n in results[setting]:
                problem("%s: %s returned twice" % (setting, tag))
            results[setting][n] = (tenant, int(pos), int(usec) if usec else None)
    warnings, stray = read_warnings(os.path.join(directory, "stderr.txt"))
    for line in stray[:10]:
        problem("psql said: " + line)

    def show(n):
        return json.dumps(cases[n][0])[:120]

    for n, (text, tenant, pos, origin, want) in cases.items():
        if backend.get(n, "missing") != want:
            problem("%s (%s): the backend's timestamptz input gives %s, the independent reading %s"
                    % (show(n), origin, backend.get(n, "missing"), want))
    for name, _, _, _ in SETTINGS:
        got_all = results.get(name, {})
        if len(got_all) != len(cases):
            problem("%s: %d rows for %d date strings" % (name, len(got_all), len(cases)))
        warned = {}
        for tag, quoted, tenant in warnings.get(name, []):
            n = int(tag[1:])
            if n in warned:
                problem("%s: two WARNINGs for %s" % (name, show(n)))
            warned[n] = (quoted, tenant)
        for n, (text, tenant, pos, origin, want) in cases.items():
            got = got_all.get(n)
            if got is None:
                continue
            if got[0] != tenant or got[1] != pos:
                problem("%s: %s came back as customer %s's row %d, not %s's row %d"
                        % (name, show(n), got[0], got[1], tenant, pos))
            if got[2] != want:
                problem("%s: %s (%s): pcqual gives %s, expected %s" % (name, show(n), origin, got[2], want))
            if got[2] is None:
                if n not in warned:
                    problem("%s: no WARNING for %s" % (name, show(n)))
                elif warned[n] != (quotable(text), tenant):
                    problem("%s: the WARNING for %s quotes %s for customer %s"
                            % (name, show(n), json.dumps(warned[n][0])[:120], warned[n][1]))
            elif n in warned:
                problem("%s: a WARNING for %s, which has a date" % (name, show(n)))
        for n in warned:
            if n not in cases:
                problem("%s: a WARNING for an unknown qualification d%d" % (name, n))

    dated = sum(1 for c in cases.values() if c[4] is not None)
    shaped_count = sum(1 for c in cases.values() if SHAPE.fullmatch(c[0]))
    if problems:
        print("FAILED: %d problem(s):" % len(problems))
        for p in problems:
            print("  " + p)
        return 1
    print("ok: %d date strings x %d session settings: %d of Partner Center's shape reached the "
          "backend's date routines, %d gave a timestamp equal to the backend's timestamptz input "
          "and the independent reading, %d a NULL date with one WARNING 22007 each"
          % (len(cases), len(SETTINGS), shaped_count, dated, len(cases) - dated))
    return 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "make":
        count, seed = 3000, 20240229
        rest = argv[2:]
        while rest:
            if rest[0] == "--count" and len(rest) > 1:
                count = int(rest[1])
            elif rest[0] == "--seed" and len(rest) > 1:
                seed = int(rest[1])
            else:
                raise SystemExit("usage: date_cases.py make DIR [--count N] [--seed S]")
            rest = rest[2:]
        make(argv[1], count, seed)
        return 0
    if len(argv) == 2 and argv[0] == "check":
        return check(argv[1])
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
