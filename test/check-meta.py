#!/usr/bin/env python3
"""Checks META.json, pcqual's PGXN metadata (standard library only).

  python3 test/check-meta.py [META.json]     check; exit 1 with the problems
  python3 test/check-meta.py --self-test     prove the checks can fail

Valid against the PGXN Meta Spec 1.0.0 (https://pgxn.org/meta/spec.txt), as
its v1 JSON schemas state it: the required keys (name, version, abstract,
maintainer, license, provides, meta-spec), no key outside the spec but x_
and X_ custom keys, terms (names) of two or more characters without slash,
backslash, space or control characters, SemVer versions, version ranges in
prereqs, the license names the spec knows, provides' extensions with a file
and a version, resources, tags and no_index of the right shapes.

Consistent with the tree: the version is pcqual.control's default_version
as SemVer (1.3 is 1.3.0), for the distribution and the extension; the
extension's file and docfile exist; the abstract is the control file's
comment; debian/changelog's newest entry is that version; the PostgreSQL
prerequisite is debian/pgversions' oldest major.  Run by test/run-suites.sh
(./test/check.sh).
"""

import copy
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

SEMVER = (r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
          r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
          r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
          r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?")
SEMVER_RE = re.compile("^" + SEMVER + "$")
RANGE_ITEM = r"(?:(?:[=!]=|[<>]=?)\s*)?" + SEMVER
RANGE_RE = re.compile(r"^(?:(?:(?:[=!]=|[<>]=?)\s*)?" + SEMVER + r"|0)(?:,\s*" + RANGE_ITEM + r")*$")
TERM_RE = re.compile(r"^[^/\\\s\x00-\x1f\x7f]{2,}$")
CUSTOM_RE = re.compile(r"^[xX]_.")
LICENSES = {
    "agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd", "freebsd",
    "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1", "lgpl_3_0", "mit",
    "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5", "postgresql", "qpl_1_0", "ssleay",
    "sun", "zlib", "open_source", "restricted", "unrestricted", "unknown",
}
TOP_KEYS = {"name", "version", "abstract", "maintainer", "license", "provides", "meta-spec",
            "description", "generated_by", "tags", "no_index", "prereqs", "release_status",
            "resources"}
REQUIRED = ("name", "version", "abstract", "maintainer", "license", "provides", "meta-spec")
PHASES = {"configure", "build", "test", "runtime", "develop"}
RELATIONSHIPS = {"requires", "recommends", "suggests", "conflicts"}
URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")


class Problems(list):
    def add(self, path, text):
        self.append("%s: %s" % (path, text))


def is_string(v, min_len=1):
    return isinstance(v, str) and len(v) >= min_len


def check_keys(obj, allowed, path, problems):
    for k in obj:
        if k not in allowed and not CUSTOM_RE.match(k):
            problems.add(path, "unknown key %r (the spec allows %s, or x_ custom keys)"
                         % (k, ", ".join(sorted(allowed))))


def check_object(v, path, problems, min_props=1):
    if not isinstance(v, dict):
        problems.add(path, "must be an object")
        return False
    if len(v) < min_props:
        problems.add(path, "must not be empty")
        return False
    return True


def check_semver(v, path, problems):
    if not (isinstance(v, str) and SEMVER_RE.match(v)):
        problems.add(path, "%r is not a SemVer version (MAJOR.MINOR.PATCH)" % (v,))


def check_license(v, path, problems):
    if isinstance(v, str):
        if v not in LICENSES:
            problems.add(path, "%r is not a license name the spec knows" % v)
    elif isinstance(v, list):
        if not v:
            problems.add(path, "must not be empty")
        for i, item in enumerate(v):
            if isinstance(item, str):
                check_license(item, "%s[%d]" % (path, i), problems)
            else:
                problems.add("%s[%d]" % (path, i), "must be a license name")
    elif check_object(v, path, problems):
        for name, uri in v.items():
            if not (isinstance(uri, str) and URI_RE.match(uri)):
                problems.add("%s.%s" % (path, name), "must be a URI")


def check_maintainer(v, path, problems):
    items = v if isinstance(v, list) else [v]
    if isinstance(v, list) and not v:
        problems.add(path, "must not be empty")
    for i, item in enumerate(items):
        if not is_string(item):
            problems.add(path if not isinstance(v, list) else "%s[%d]" % (path, i),
                         "must be a non-empty string (Name <email>)")


def check_provides(v, path, problems):
    if not check_object(v, path, problems):
        return
    for name, ext in v.items():
        p = "%s.%s" % (path, name)
        if not TERM_RE.match(name):
            problems.add(p, "an extension name must be a term (2+ characters, no /, \\, space)")
        if not check_object(ext, p, problems):
            continue
        check_keys(ext, {"file", "version", "abstract", "docfile", "docpath"}, p, problems)
        for key in ("file", "version"):
            if key not in ext:
                problems.add(p, "%s is required" % key)
        if "version" in ext:
            check_semver(ext["version"], p + ".version", problems)
        for key in ("file", "docfile", "abstract"):
            if key in ext and not is_string(ext[key]):
                problems.add("%s.%s" % (p, key), "must be a non-empty string")
        for key in ("file", "docfile"):
            if is_string(ext.get(key)) and (ext[key].startswith("/") or "\\" in ext[key]):
                problems.add("%s.%s" % (p, key), "must be a relative path with / separators")


def check_meta_spec(v, path, problems):
    if not check_object(v, path, problems):
        return
    check_keys(v, {"version", "url"}, path, problems)
    if not (isinstance(v.get("version"), str) and re.match(r"^1\.0\.\d+$", v["version"])):
        problems.add(path + ".version", "must be 1.0.x (this is a 1.0 META.json)")
    if "url" in v and not (isinstance(v["url"], str) and URI_RE.match(v["url"])):
        problems.add(path + ".url", "must be a URI")


def check_prereqs(v, path, problems):
    if not check_object(v, path, problems):
        return
    check_keys(v, PHASES, path, problems)
    for phase, rels in v.items():
        p = "%s.%s" % (path, phase)
        if CUSTOM_RE.match(phase) or not check_object(rels, p, problems):
            continue
        check_keys(rels, RELATIONSHIPS, p, problems)
        for rel, deps in rels.items():
            q = "%s.%s" % (p, rel)
            if CUSTOM_RE.match(rel) or not check_object(deps, q, problems, min_props=0):
                continue
            for dep, rng in deps.items():
                r = "%s.%s" % (q, dep)
                if not TERM_RE.match(dep):
                    problems.add(r, "a prerequisite's name must be a term")
                if not (rng == 0 or (isinstance(rng, str) and RANGE_RE.match(rng))):
                    problems.add(r, "%r is not a version range (0, 1.2.3, >= 1.2.3, ...)" % (rng,))


def check_resources(v, path, problems):
    if not check_object(v, path, problems):
        return
    check_keys(v, {"homepage", "bugtracker", "repository"}, path, problems)
    if "homepage" in v and not (isinstance(v["homepage"], str) and URI_RE.match(v["homepage"])):
        problems.add(path + ".homepage", "must be a URI")
    for key, allowed in (("bugtracker", {"web", "mailto"}), ("repository", {"url", "web", "type"})):
        if key in v and check_object(v[key], "%s.%s" % (path, key), problems):
            check_keys(v[key], allowed, "%s.%s" % (path, key), problems)
            for k, val in v[key].items():
                if not CUSTOM_RE.match(k) and not is_string(val):
                    problems.add("%s.%s.%s" % (path, key, k), "must be a non-empty string")


def check_string_list(v, path, problems, max_len=None):
    if not isinstance(v, list) or not v:
        problems.add(path, "must be a non-empty array of strings")
        return
    if len(set(map(str, v))) != len(v):
        problems.add(path, "has duplicates")
    for i, item in enumerate(v):
        if not is_string(item) or (max_len and len(item) > max_len):
            problems.add("%s[%d]" % (path, i), "must be a string of 1 to %s characters"
                         % (max_len or "any number of"))


def check_no_index(v, path, problems):
    if not check_object(v, path, problems):
        return
    check_keys(v, {"file", "directory"}, path, problems)
    for key in ("file", "directory"):
        if key in v:
            if isinstance(v[key], str):
                if not v[key]:
                    problems.add("%s.%s" % (path, key), "must not be empty")
            else:
                check_string_list(v[key], "%s.%s" % (path, key), problems)


def check_spec(meta):
    """Problems of META.json against the PGXN Meta Spec 1.0.0."""
    problems = Problems()
    if not isinstance(meta, dict):
        problems.add("META.json", "must be a JSON object")
        return problems
    check_keys(meta, TOP_KEYS, "META.json", problems)
    for key in REQUIRED:
        if key not in meta:
            problems.add(key, "is required")
    if "name" in meta and not (isinstance(meta["name"], str) and TERM_RE.match(meta["name"])):
        problems.add("name", "must be a term (2+ characters, no /, \\, space or control characters)")
    if "version" in meta:
        check_semver(meta["version"], "version", problems)
    for key in ("abstract", "description", "generated_by"):
        if key in meta and not is_string(meta[key]):
            problems.add(key, "must be a non-empty string")
    if "maintainer" in meta:
        check_maintainer(meta["maintainer"], "maintainer", problems)
    if "license" in meta:
        check_license(meta["license"], "license", problems)
    if "provides" in meta:
        check_provides(meta["provides"], "provides", problems)
    if "meta-spec" in meta:
        check_meta_spec(meta["meta-spec"], "meta-spec", problems)
    if "prereqs" in meta:
        check_prereqs(meta["prereqs"], "prereqs", problems)
    if "resources" in meta:
        check_resources(meta["resources"], "resources", problems)
    if "tags" in meta:
        check_string_list(meta["tags"], "tags", problems, max_len=255)
    if "no_index" in meta:
        check_no_index(meta["no_index"], "no_index", problems)
    if "release_status" in meta and meta["release_status"] not in ("stable", "testing", "unstable"):
        problems.add("release_status", "must be stable, testing or unstable")
    return problems


def control_setting(text, name):
    m = re.search(r"^\s*%s\s*=\s*'([^']*)'" % re.escape(name), text, re.M)
    return m.group(1) if m else None


def as_semver(version):
    """pcqual.control's X.Y as PGXN's X.Y.0."""
    parts = version.split(".")
    return ".".join(parts + ["0"] * (3 - len(parts))) if len(parts) < 3 else version


def check_tree(meta, repo):
    """Problems of META.json against the tree it describes."""
    problems = Problems()
    try:
        with open(os.path.join(repo, "pcqual.control")) as f:
            control = f.read()
    except OSError as e:
        problems.add("pcqual.control", str(e))
        return problems
    version = control_setting(control, "default_version")
    semver = as_semver(version or "")
    if meta.get("version") != semver:
        problems.add("version", "is %r but pcqual.control's default_version %r means %r"
                     % (meta.get("version"), version, semver))
    ext = (meta.get("provides") or {}).get("pcqual")
    if not isinstance(ext, dict):
        problems.add("provides.pcqual", "is missing: the distribution provides the extension pcqual")
    else:
        if ext.get("version") != semver:
            problems.add("provides.pcqual.version", "is %r but pcqual.control's default_version "
                         "%r means %r" % (ext.get("version"), version, semver))
        if ext.get("file") != "pcqual--%s.sql" % version:
            problems.add("provides.pcqual.file", "is %r, not the install script of version %s, "
                         "pcqual--%s.sql" % (ext.get("file"), version, version))
        for key in ("file", "docfile"):
            if is_string(ext.get(key)) and not os.path.isfile(os.path.join(repo, ext[key])):
                problems.add("provides.pcqual." + key, "%s does not exist" % ext[key])
    comment = control_setting(control, "comment")
    if meta.get("abstract") != comment:
        problems.add("abstract", "is %r but pcqual.control's comment is %r"
                     % (meta.get("abstract"), comment))
    changelog = os.path.join(repo, "debian", "changelog")
    if os.path.exists(changelog):
        with open(changelog) as f:
            m = re.match(r"^pcqual \(([^)-]+)(?:-[^)]*)?\)", f.readline())
        if not m or m.group(1) != version:
            problems.add("debian/changelog", "the newest entry is %s, not pcqual.control's "
                         "default_version %s" % (m.group(1) if m else "unreadable", version))
    pgversions = os.path.join(repo, "debian", "pgversions")
    pg = ((meta.get("prereqs") or {}).get("runtime") or {}).get("requires", {}).get("PostgreSQL")
    if os.path.exists(pgversions):
        with open(pgversions) as f:
            m = re.search(r"^(\d+)\+?\s*$", f.read(), re.M)
        if m and pg != "%s.0.0" % m.group(1):
            problems.add("prereqs.runtime.requires.PostgreSQL", "is %r but debian/pgversions "
                         "starts at %s (%s.0.0)" % (pg, m.group(1), m.group(1)))
    return problems


def check(path, repo):
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        return Problems(["%s: %s" % (path, e)])
    return check_spec(meta) + check_tree(meta, repo)


def self_test(path, repo):
    """Every check must fail on a META.json broken its way."""
    with open(path) as f:
        good = json.load(f)

    def broken(change):
        meta = copy.deepcopy(good)
        change(meta)
        return meta

    cases = [
        ("version differs from pcqual.control", lambda m: m.update(version="9.9.0"), True),
        ("extension version differs", lambda m: m["provides"]["pcqual"].update(version="1.2.0"), True),
        ("not SemVer", lambda m: m.update(version="1.3"), False),
        ("maintainer missing", lambda m: m.pop("maintainer"), False),
        ("unknown license", lambda m: m.update(license="postgres"), False),
        ("unknown key", lambda m: m.update(homepage="https://example.com/"), False),
        ("custom key allowed", lambda m: m.update(x_comment="fine"), None),
        ("bad range", lambda m: m["prereqs"]["runtime"]["requires"].update(PostgreSQL="15"), False),
        ("meta-spec 2", lambda m: m["meta-spec"].update(version="2.0.0"), False),
        ("name with a space", lambda m: m.update(name="pc qual"), False),
        ("file missing", lambda m: m["provides"]["pcqual"].pop("file"), False),
        ("empty tags", lambda m: m.update(tags=[]), False),
    ]
    failures = 0
    if check_spec(good) or check_tree(good, repo):
        print("self-test: the real META.json does not pass")
        failures += 1
    for name, change, tree_check in cases:
        meta = broken(change)
        found = check_spec(meta) + (check_tree(meta, repo) if tree_check else Problems())
        ok = not found if tree_check is None else bool(found)
        print("%s - %s%s" % ("ok" if ok else "FAILED", name,
                             ": " + found[0] if found and ok else ""))
        failures += not ok
    return failures


def main(argv):
    if argv[1:2] == ["--self-test"]:
        path = os.path.join(REPO, "META.json")
        sys.exit(1 if self_test(path, REPO) else 0)
    path = argv[1] if len(argv) > 1 else os.path.join(REPO, "META.json")
    problems = check(path, os.path.dirname(os.path.abspath(path)))
    if problems:
        print("META.json is not valid PGXN metadata for this tree:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        sys.exit(1)
    with open(path) as f:
        meta = json.load(f)
    print("META.json: valid PGXN Meta Spec 1.0.0, %s %s as pcqual.control says"
          % (meta["name"], meta["version"]))


if __name__ == "__main__":
    main(sys.argv)
