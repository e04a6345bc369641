"""Both migration trees build the same schema.

A fresh SQLite store and a fresh PostgreSQL database are migrated with every file present
in ``receiver/store/migrations/<dialect>/``; each schema is then read back from its own
catalogs (``information_schema`` and ``pg_catalog`` on PostgreSQL; ``sqlite_master`` and the
``PRAGMA`` table functions on SQLite) into one dialect-neutral shape, and the two shapes are
compared: tables, columns (nullability, type family, default), primary keys, unique
constraints, foreign keys, check constraints, indexes, guarding triggers and views.

Type families follow the store's contract (``receiver.store.db``): PostgreSQL has native
``timestamptz`` and ``jsonb``; SQLite keeps both as text, and the store decodes a text column
as a timestamp when it is named ``*_at`` (or in ``TIME_COLUMNS``) and as JSON when it is in
``JSON_COLUMNS``. So a SQLite text column's family is the one the store reads it as, and a
PostgreSQL ``jsonb`` column missing from ``JSON_COLUMNS`` shows up here as ``json`` vs ``text``.

Check constraints and partial-index predicates are compared as normalised text: casts,
parentheses and commas dropped, PostgreSQL's ``= ANY (ARRAY[...])`` read back as ``IN``,
``~~`` as ``LIKE``, keywords lower-cased (parentheses are not kept, so two expressions that
differ only in grouping compare equal).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from receiver.store import open_store
from receiver.store.db import JSON_COLUMNS, TIME_COLUMNS
from receiver.store.migrations import available
from tests.conftest import drop_pg_database, new_pg_database, pg_url

DIALECTS = ("postgres", "sqlite")
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "receiver" / "store" / "migrations"

# Deliberate differences between the two trees: (aspect, subject) -> why it is right.
# An entry that no longer matches any difference fails test_allowlist_has_no_stale_entries.
ALLOWED: dict[tuple[str, str], str] = {
    ("table", "sqlite_sequence"): "SQLite's own bookkeeping for AUTOINCREMENT ids; "
    "PostgreSQL keeps the same counters in the sequences behind BIGSERIAL",
    ("function", "audit_log_append_only"): "PostgreSQL triggers call a function; SQLite "
    "triggers carry their body (RAISE(ABORT, ...)) inline",
    ("trigger", "audit_log: BEFORE TRUNCATE"): "SQLite has no TRUNCATE statement (an "
    "unqualified DELETE is refused by its BEFORE DELETE trigger)",
    ("type", "schema_migrations.applied_at"): "the migrator's own bookkeeping, written as text "
    "on both backends by receiver/store/migrations.py and never read through the store",
}


# --- SQL text: tokens and normal form ---------------------------------------------------

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<string>'(?:[^']|'')*')
    | (?P<quoted>"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\](?=\s*[\w(]))
    | (?P<number>\d+(?:\.\d+)?)
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<op>::|<>|!=|==|>=|<=|\|\||!~~\*?|~~\*?|[-+*/%=<>(),.;\[\]~!])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Tok:
    kind: str  # string, quoted, number, word, op
    text: str

    @property
    def key(self) -> str:
        """Keywords and bare identifiers compare case-insensitively; literals exactly."""
        if self.kind == "word":
            return self.text.lower()
        if self.kind == "quoted":
            return self.text[1:-1].replace('""', '"')
        return self.text


def tokens(sql: str) -> list[Tok]:
    out, pos = [], 0
    while pos < len(sql):
        m = _TOKEN.match(sql, pos)
        if m is None:
            raise ValueError(f"cannot read SQL at {sql[pos:pos + 30]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind not in ("space", "comment"):
            out.append(Tok(kind, m.group()))
    return out


def _is(tok: Tok | None, *words: str) -> bool:
    return tok is not None and tok.kind in ("word", "op") and tok.text.lower() in words


_TYPE_WORDS = {"varying", "with", "without", "time", "zone", "precision"}


def normal_expr(toks: list[Tok]) -> str:
    """One normal form of a PostgreSQL or SQLite expression (see the module docstring)."""
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if t.text == "::":  # cast: drop the type name (several words, maybe an array)
            i += 2
            while i < len(toks) and _is(toks[i], *_TYPE_WORDS):
                i += 1
            while i + 1 < len(toks) and toks[i].text == "[" and toks[i + 1].text == "]":
                i += 2
            continue
        if t.text in ("=", "<>", "!=") and _is(nxt, "any", "all"):
            # x = ANY (ARRAY['a', 'b']) is PostgreSQL's rendering of x IN ('a', 'b')
            out.append("in" if t.text == "=" else "not in")
            i += 2
            if i < len(toks) and toks[i].text == "(":
                i += 1
            if _is(toks[i] if i < len(toks) else None, "array"):
                i += 1
            continue
        if _is(t, "array") and nxt is not None and nxt.text == "[":
            i += 1
            continue
        if t.text in ("(", ")", ",", "[", "]"):
            i += 1
            continue
        out.append({"~~": "like", "!~~": "not like", "~~*": "ilike", "!~~*": "not ilike",
                    "!=": "<>", "==": "=", "true": "1", "false": "0"}.get(t.key, t.key))
        i += 1
    return " ".join(out)


def _balanced(toks: list[Tok], start: int) -> tuple[list[Tok], int]:
    """The tokens inside the parenthesis opening at toks[start], and the index after it."""
    depth, i = 0, start
    while i < len(toks):
        if toks[i].text == "(":
            depth += 1
        elif toks[i].text == ")":
            depth -= 1
            if depth == 0:
                return toks[start + 1 : i], i + 1
        i += 1
    raise ValueError("unbalanced parentheses")


def sqlite_checks(create_sql: str) -> list[str]:
    """Every CHECK (...) of a SQLite CREATE TABLE, column-level or table-level."""
    toks, out, i = tokens(create_sql), [], 0
    while i < len(toks):
        if toks[i].kind == "word" and toks[i].key == "check" and i + 1 < len(toks) \
                and toks[i + 1].text == "(":
            inner, i = _balanced(toks, i + 1)
            out.append(normal_expr(inner))
        else:
            i += 1
    return out


def sqlite_index_predicate(create_sql: str) -> str | None:
    toks, depth = tokens(create_sql), 0
    for i, t in enumerate(toks):
        depth += (t.text == "(") - (t.text == ")")
        if depth == 0 and t.kind == "word" and t.key == "where":
            return normal_expr(toks[i + 1 :])
    return None


def normal_default(text: str | None) -> str | None:
    if text is None:
        return None
    toks = tokens(text)
    if toks and toks[0].key == "nextval":
        return "<autoincrement>"
    norm = normal_expr(toks)
    return "current_timestamp" if norm in ("now", "current_timestamp") else norm


# --- one dialect-neutral shape ----------------------------------------------------------


@dataclass(frozen=True)
class Column:
    family: str
    nullable: bool
    default: str | None


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str
    on_update: str

    def __str__(self) -> str:
        text = f"({', '.join(self.columns)}) -> {self.ref_table} ({', '.join(self.ref_columns)})"
        if self.on_delete != "no action":
            text += f" on delete {self.on_delete}"
        if self.on_update != "no action":
            text += f" on update {self.on_update}"
        return text


@dataclass(frozen=True)
class Index:
    table: str
    columns: tuple[str, ...]
    unique: bool
    predicate: str | None

    def __str__(self) -> str:
        text = f"{'UNIQUE ' if self.unique else ''}ON {self.table} ({', '.join(self.columns)})"
        return text + (f" WHERE {self.predicate}" if self.predicate else "")


@dataclass
class Table:
    columns: dict[str, Column] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()
    uniques: set[tuple[str, ...]] = field(default_factory=set)
    foreign_keys: set[ForeignKey] = field(default_factory=set)
    checks: list[str] = field(default_factory=list)


@dataclass
class Schema:
    tables: dict[str, Table] = field(default_factory=dict)
    indexes: dict[str, Index] = field(default_factory=dict)
    triggers: set[tuple[str, str, str]] = field(default_factory=set)  # table, timing, event
    views: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    migrations: list[tuple[int, str]] = field(default_factory=list)


def store_family(name: str, stored_as: str) -> str:
    """What the store reads a SQLite column as: text is decoded by column name."""
    if stored_as != "text":
        return stored_as
    if name.endswith("_at") or name in TIME_COLUMNS:
        return "timestamp"
    if name in JSON_COLUMNS:
        return "json"
    return "text"


def sqlite_family(name: str, declared: str) -> str:
    d = declared.upper()
    if "INT" in d:  # SQLite's affinity rules, in their order
        return "integer"
    if "BOOL" in d:
        return "boolean"
    if any(w in d for w in ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        return "real"
    if "BLOB" in d or d == "":
        return "blob"
    if "JSON" in d:
        return "json"
    if "TIMESTAMP" in d or "DATETIME" in d:
        return "timestamp"
    return store_family(name, "text")


_PG_FAMILY = {
    "smallint": "integer", "integer": "integer", "bigint": "integer",
    "text": "text", "character varying": "text", "character": "text", "uuid": "text",
    "timestamp with time zone": "timestamp",
    # naive timestamps come back without a zone, unlike SQLite's ISO-8601 UTC text
    "timestamp without time zone": "timestamp (no time zone)",
    "jsonb": "json", "json": "json", "boolean": "boolean",
    "real": "real", "double precision": "real", "numeric": "real", "bytea": "blob",
}
_PG_ACTIONS = {"a": "no action", "r": "restrict", "c": "cascade", "n": "set null",
               "d": "set default"}


def read_postgres(conn: psycopg.Connection[Any]) -> Schema:
    s = Schema()

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return conn.execute(sql).fetchall()

    for (name,) in rows("SELECT table_name FROM information_schema.tables"
                        " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"):
        s.tables[name] = Table()
    for (name,) in rows("SELECT table_name FROM information_schema.views"
                        " WHERE table_schema = current_schema()"):
        s.views.add(name)
    for table, col, nullable, data_type, default, identity in rows(
        "SELECT table_name, column_name, is_nullable, data_type, column_default, is_identity"
        " FROM information_schema.columns WHERE table_schema = current_schema()"
    ):
        if table not in s.tables:
            continue
        s.tables[table].columns[col] = Column(
            _PG_FAMILY.get(data_type, data_type),
            nullable == "YES",
            "<autoincrement>" if identity == "YES" else normal_default(default),
        )
    for table, ctype, cols in rows(
        "SELECT tc.table_name, tc.constraint_type,"
        " array_agg(kcu.column_name::text ORDER BY kcu.ordinal_position)"
        " FROM information_schema.table_constraints tc"
        " JOIN information_schema.key_column_usage kcu"
        "   ON kcu.constraint_schema = tc.constraint_schema"
        "  AND kcu.constraint_name = tc.constraint_name AND kcu.table_name = tc.table_name"
        " WHERE tc.table_schema = current_schema()"
        "   AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE')"
        " GROUP BY tc.table_name, tc.constraint_name, tc.constraint_type"
    ):
        if ctype == "PRIMARY KEY":
            s.tables[table].primary_key = tuple(cols)
        else:
            s.tables[table].uniques.add(tuple(cols))
    for table, cols, ref_table, ref_cols, on_delete, on_update in rows(
        "SELECT c.conrelid::regclass::text,"
        " ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o)"
        "       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),"
        " c.confrelid::regclass::text,"
        " ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o)"
        "       JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o),"
        " c.confdeltype::text, c.confupdtype::text"
        " FROM pg_constraint c JOIN pg_namespace ns ON ns.oid = c.connamespace"
        " WHERE c.contype = 'f' AND ns.nspname = current_schema()"
    ):
        s.tables[table].foreign_keys.add(ForeignKey(
            tuple(cols), ref_table, tuple(ref_cols), _PG_ACTIONS[on_delete],
            _PG_ACTIONS[on_update]))
    for table, definition in rows(
        "SELECT c.conrelid::regclass::text, pg_get_constraintdef(c.oid)"
        " FROM pg_constraint c JOIN pg_namespace ns ON ns.oid = c.connamespace"
        " WHERE c.contype = 'c' AND ns.nspname = current_schema()"
    ):
        toks = tokens(definition)
        assert toks[0].key == "check" and toks[1].text == "(", definition
        inner, _ = _balanced(toks, 1)
        s.tables[table].checks.append(normal_expr(inner))
    for name, table, unique, predicate, cols in rows(
        "SELECT ic.relname::text, tc.relname::text, i.indisunique,"
        " pg_get_expr(i.indpred, i.indrelid),"
        " ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)"
        "       || CASE WHEN i.indoption[k - 1] & 1 = 1 THEN ' DESC' ELSE '' END"
        "       FROM generate_series(1, i.indnkeyatts) k ORDER BY k)"
        " FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid"
        " JOIN pg_class tc ON tc.oid = i.indrelid JOIN pg_namespace ns ON ns.oid = tc.relnamespace"
        " WHERE ns.nspname = current_schema()"
        "   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
    ):
        known = s.tables[table].columns
        s.indexes[name] = Index(
            table,
            tuple(c if c.split(" ")[0] in known else "<expression>" for c in cols),
            unique,
            normal_expr(tokens(predicate)) if predicate else None,
        )
    for table, tgtype in rows(
        "SELECT t.tgrelid::regclass::text, t.tgtype FROM pg_trigger t"
        " JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace ns ON ns.oid = c.relnamespace"
        " WHERE NOT t.tgisinternal AND ns.nspname = current_schema()"
    ):
        timing = "INSTEAD OF" if tgtype & 64 else "BEFORE" if tgtype & 2 else "AFTER"
        for bit, event in ((4, "INSERT"), (8, "DELETE"), (16, "UPDATE"), (32, "TRUNCATE")):
            if tgtype & bit:
                s.triggers.add((table, timing, event))
    for (name,) in rows(
        "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace ns ON ns.oid = p.pronamespace"
        " WHERE ns.nspname = current_schema()"
    ):
        s.functions.add(name)
    s.migrations = [(v, n) for v, n in rows("SELECT version, name FROM schema_migrations"
                                            " ORDER BY version")]
    return s


_SQLITE_ACTIONS = {"NO ACTION": "no action", "RESTRICT": "restrict", "CASCADE": "cascade",
                   "SET NULL": "set null", "SET DEFAULT": "set default"}


def read_sqlite(conn: sqlite3.Connection) -> Schema:
    s = Schema()
    master = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    for kind, name, _, _ in master:
        if kind == "table":
            s.tables[name] = Table()
        elif kind == "view":
            s.views.add(name)
    for kind, name, _, sql in master:
        if kind != "table":
            continue
        t = s.tables[name]
        info = conn.execute("SELECT cid, name, type, \"notnull\", dflt_value, pk"
                            " FROM pragma_table_info(?)", (name,)).fetchall()
        pk = [row for row in info if row[5]]
        create = tokens(sql or "")
        autoincrement = any(tok.key == "autoincrement" for tok in create)
        for _, col, declared, notnull, default, pk_pos in info:
            dflt, nullable = normal_default(default), not notnull
            if len(pk) == 1 and pk_pos and declared.upper() == "INTEGER":
                # The rowid alias never holds NULL (a NULL written there picks a new id);
                # with AUTOINCREMENT it never hands out an id twice, like a sequence.
                nullable = False
                dflt = "<autoincrement>" if autoincrement else ROWID
            t.columns[col] = Column(sqlite_family(col, declared), nullable, dflt)
        t.primary_key = tuple(row[1] for row in sorted(pk, key=lambda r: r[5]))
        t.checks = sqlite_checks(sql or "")
        for _, index, unique, origin, partial in conn.execute(
            "SELECT seq, name, \"unique\", origin, partial FROM pragma_index_list(?)", (name,)
        ).fetchall():
            cols = conn.execute(
                "SELECT name, \"desc\" FROM pragma_index_xinfo(?) WHERE key = 1 ORDER BY seqno",
                (index,),
            ).fetchall()
            names = tuple("<expression>" if c is None else c + (" DESC" if d else "")
                          for c, d in cols)
            if origin == "u":
                s.tables[name].uniques.add(names)
            elif origin == "c":
                index_sql = next(m[3] for m in master if m[0] == "index" and m[1] == index)
                predicate = sqlite_index_predicate(index_sql) if partial else None
                s.indexes[index] = Index(name, names, bool(unique), predicate)
        fks: dict[int, list[tuple[Any, ...]]] = {}
        for row in conn.execute("SELECT id, seq, \"table\", \"from\", \"to\", on_update,"
                                " on_delete FROM pragma_foreign_key_list(?)", (name,)):
            fks.setdefault(row[0], []).append(row)
        for parts in fks.values():
            parts.sort(key=lambda r: r[1])
            ref_table = parts[0][2]
            ref_cols = [r[4] for r in parts]
            if any(c is None for c in ref_cols):  # REFERENCES t: the referenced primary key
                ref_cols = [r[1] for r in sorted(
                    (r for r in conn.execute("SELECT cid, name, pk FROM pragma_table_info(?)",
                                             (ref_table,)) if r[2]), key=lambda r: r[2])]
            t.foreign_keys.add(ForeignKey(
                tuple(r[3] for r in parts), ref_table, tuple(ref_cols),
                _SQLITE_ACTIONS[parts[0][6]], _SQLITE_ACTIONS[parts[0][5]]))
    for kind, _, table, sql in master:
        if kind != "trigger":
            continue
        toks = [t.key for t in tokens(sql)]
        on = toks.index("on")
        head = toks[:on]
        timing = ("INSTEAD OF" if "instead" in head else "AFTER" if "after" in head
                  else "BEFORE")
        event = next(w for w in head if w in ("insert", "update", "delete")).upper()
        s.triggers.add((table, timing, event))
    s.migrations = conn.execute("SELECT version, name FROM schema_migrations"
                                " ORDER BY version").fetchall()
    return s


# --- comparison -------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    aspect: str
    subject: str
    postgres: str
    sqlite: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.aspect}: postgres {self.postgres} vs sqlite {self.sqlite}"


MISSING = "(none)"
# SQLite's INTEGER PRIMARY KEY without AUTOINCREMENT picks an id when a row leaves it out,
# and may hand out the id of a deleted last row again. Against a PostgreSQL sequence that
# is drift; against a plain key column it is not (leaving the key out is an error there, so
# no statement of the product does).
ROWID = "<rowid, ids may be reused>"


def _show(value: object) -> str:
    if value is None:
        return MISSING
    if isinstance(value, tuple):
        return f"({', '.join(map(str, value))})"
    return str(value)


def _sets(aspect: str, subject: str, pg: set[Any], sq: set[Any]) -> list[Difference]:
    return [Difference(aspect, subject, _show(v) if v in pg else MISSING,
                       _show(v) if v in sq else MISSING)
            for v in sorted(pg ^ sq, key=str)]


def compare(pg: Schema, sq: Schema) -> list[Difference]:
    out: list[Difference] = []
    for name in sorted(pg.tables.keys() ^ sq.tables.keys()):
        out.append(Difference("table", name, "table" if name in pg.tables else MISSING,
                              "table" if name in sq.tables else MISSING))
    for name in sorted(pg.tables.keys() & sq.tables.keys()):
        a, b = pg.tables[name], sq.tables[name]
        for col in sorted(a.columns.keys() | b.columns.keys()):
            ca, cb = a.columns.get(col), b.columns.get(col)
            subject = f"{name}.{col}"
            if ca is None or cb is None:
                out.append(Difference("column", subject, ca.family if ca else MISSING,
                                      cb.family if cb else MISSING))
                continue
            if ca.family != cb.family:
                out.append(Difference("type", subject, ca.family, cb.family))
            if ca.nullable != cb.nullable:
                out.append(Difference("nullability", subject,
                                      "NULL" if ca.nullable else "NOT NULL",
                                      "NULL" if cb.nullable else "NOT NULL"))
            if ca.default != cb.default and {ca.default, cb.default} != {None, ROWID}:
                out.append(Difference("default", subject, _show(ca.default),
                                      _show(cb.default)))
        if a.primary_key != b.primary_key:
            out.append(Difference("primary key", name, _show(a.primary_key or None),
                                  _show(b.primary_key or None)))
        out += _sets("unique", name, a.uniques, b.uniques)
        out += _sets("foreign key", name, a.foreign_keys, b.foreign_keys)
        for check in sorted(set(a.checks) | set(b.checks)):
            na, nb = a.checks.count(check), b.checks.count(check)
            if na != nb:
                out.append(Difference("check", name, f"{na} x CHECK ({check})",
                                      f"{nb} x CHECK ({check})"))
    for name in sorted(pg.indexes.keys() | sq.indexes.keys()):
        ia, ib = pg.indexes.get(name), sq.indexes.get(name)
        if ia != ib:
            out.append(Difference("index", name, _show(ia), _show(ib)))
    triggers_a = {(t, f"{timing} {event}") for t, timing, event in pg.triggers}
    triggers_b = {(t, f"{timing} {event}") for t, timing, event in sq.triggers}
    for table, what in sorted(triggers_a ^ triggers_b):
        out.append(Difference("trigger", f"{table}: {what}",
                              "trigger" if (table, what) in triggers_a else MISSING,
                              "trigger" if (table, what) in triggers_b else MISSING))
    out += [Difference("view", v, "view" if v in pg.views else MISSING,
                       "view" if v in sq.views else MISSING)
            for v in sorted(pg.views ^ sq.views)]
    out += [Difference("function", f, "function", MISSING) for f in sorted(pg.functions)]
    return out


def report(differences: list[Difference]) -> str:
    return "\n".join(["the migration trees disagree:"] + [f"  {d}" for d in differences])


def unexplained(differences: list[Difference], aspects: tuple[str, ...]) -> list[Difference]:
    return [d for d in differences
            if d.aspect in aspects and (d.aspect, d.subject) not in ALLOWED]


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Schema, Schema]]:
    """Both backends migrated from nothing with every migration file present."""
    name = new_pg_database(None)
    try:
        store = open_store(pg_url(name), pool_min=0, pool_max=1)
        store.migrate()
        store.close()
        with psycopg.connect(pg_url(name), autocommit=True) as pg_conn:
            pg = read_postgres(pg_conn)
    finally:
        drop_pg_database(name)
    path = tmp_path_factory.mktemp("parity") / "remediator.db"
    store = open_store(f"sqlite:///{path}")
    store.migrate()
    store.close()
    with closing(sqlite3.connect(path)) as conn:
        sq = read_sqlite(conn)
    yield pg, sq


@pytest.fixture(scope="module")
def differences(schemas: tuple[Schema, Schema]) -> list[Difference]:
    return compare(*schemas)


# --- the trees --------------------------------------------------------------------------


def test_every_migration_file_is_named_so_the_migrator_applies_it() -> None:
    """A .sql file the migrator's NNNN_name.sql pattern skips would never be applied."""
    bad = [f"{dialect}/{p.name}" for dialect in DIALECTS
           for p in sorted((MIGRATIONS_DIR / dialect).iterdir())
           if p.suffix == ".sql" and not re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", p.name)]
    assert not bad, f"migration files the migrator skips: {bad}"


def test_both_trees_have_the_same_migration_versions_and_names() -> None:
    """Each version appears once per tree, with the same name in both trees."""
    trees = {d: [(m.version, m.name) for m in available(d)] for d in DIALECTS}
    problems = []
    for dialect, migrations in trees.items():
        versions = [v for v, _ in migrations]
        problems += [f"{dialect}: version {v:04d} used {versions.count(v)} times"
                     for v in sorted(set(versions)) if versions.count(v) > 1]
    pg, sq = dict(trees["postgres"]), dict(trees["sqlite"])
    for version in sorted(pg.keys() | sq.keys()):
        if pg.get(version) != sq.get(version):
            problems.append(f"{version:04d}: postgres {pg.get(version) or MISSING}"
                            f" vs sqlite {sq.get(version) or MISSING}")
    assert not problems, "\n".join(["migration trees disagree:", *problems])


def test_migrating_records_every_migration_on_both_backends(
    schemas: tuple[Schema, Schema],
) -> None:
    """A fresh store of either backend records exactly the migrations of its tree."""
    pg, sq = schemas
    assert pg.migrations == [(m.version, m.name) for m in available("postgres")]
    assert sq.migrations == [(m.version, m.name) for m in available("sqlite")]


# --- the schema they build --------------------------------------------------------------


def test_same_tables_and_views(differences: list[Difference]) -> None:
    """Both trees create the same tables and views."""
    found = unexplained(differences, ("table", "view"))
    assert not found, report(found)


def test_same_columns(differences: list[Difference]) -> None:
    """Every table has the same columns, nullability, type family and default on both."""
    found = unexplained(differences, ("column", "type", "nullability", "default"))
    assert not found, report(found)


def test_same_keys_and_constraints(differences: list[Difference]) -> None:
    """Primary keys, unique constraints, foreign keys and checks agree table by table."""
    found = unexplained(differences, ("primary key", "unique", "foreign key", "check"))
    assert not found, report(found)


def test_same_indexes(differences: list[Difference]) -> None:
    """Indexes agree by name: table, columns and order, uniqueness, partial predicate."""
    found = unexplained(differences, ("index",))
    assert not found, report(found)


def test_same_guarding_triggers(differences: list[Difference]) -> None:
    """The same statements are refused by triggers on the same tables (append-only audit)."""
    found = unexplained(differences, ("trigger", "function"))
    assert not found, report(found)


def test_allowlist_has_no_stale_entries(differences: list[Difference]) -> None:
    """Every allowed difference still exists, so the list stays short and true."""
    seen = {(d.aspect, d.subject) for d in differences}
    stale = [k for k in ALLOWED if k not in seen]
    assert not stale, f"allowlist entries that match no difference any more: {stale}"


# --- migrations written to close a drift -----------------------------------------------


def _migrate_before(url: str, version: int) -> Any:
    """A store of ``url`` migrated with the files numbered below ``version`` only."""
    from receiver.store.migrations import _statements

    store = open_store(url)
    with store.db.migration_lock() as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER"
                   " PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
        for mig in available(store.dialect):
            if mig.version < version:
                for statement in _statements(mig.sql):
                    tx.execute(statement)
                tx.execute("INSERT INTO schema_migrations (version, name, applied_at)"
                           " VALUES (:v, :n, 'x')", {"v": mig.version, "n": mig.name})
    return store


def test_upgrade_makes_text_keys_not_null_and_keeps_rows(tmp_path: Path) -> None:
    """Upgrading a store keeps every control, lock and session; afterwards a NULL key is
    refused on both backends (SQLite took it before), and sessions keep their indexes."""
    from datetime import UTC, datetime

    from receiver.errors import StoreError

    version = next(m.version for m in available("sqlite") if m.name == "primary_keys_not_null")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = {
        "controls": {"name": "worker", "value": "paused", "reason": "r", "updated_by": "u",
                     "updated_at": at},
        "target_locks": {"target": "docker:web", "job_id": 7, "expires_at": at},
        "sessions": {"id_hash": "h", "user_name": "alice", "created_at": at,
                     "last_seen_at": at, "expires_at": at, "password_fingerprint": "f",
                     "address": "127.0.0.1", "revoked_at": None, "revoked_reason": None},
    }
    key = {"controls": "name", "target_locks": "target", "sessions": "id_hash"}

    def insert(tx: Any, table: str, row: dict[str, Any]) -> None:
        tx.execute(f"INSERT INTO {table} ({', '.join(row)})"  # noqa: S608 - constant names
                   f" VALUES ({', '.join(':' + c for c in row)})", row)

    name = new_pg_database(None)
    try:
        for url in (f"sqlite:///{tmp_path}/old.db", pg_url(name)):
            store = _migrate_before(url, version)
            with store.db.transaction() as tx:
                for table, row in rows.items():
                    insert(tx, table, row)
                    if store.dialect == "sqlite":  # the drift: a NULL key was taken
                        insert(tx, table, {**row, key[table]: None})
            applied = store.migrate()
            assert f"{version:04d}_primary_keys_not_null" in applied
            with store.db.transaction(write=False) as tx:
                for table, row in rows.items():
                    assert tx.fetchall(f"SELECT * FROM {table}") == [row], (url, table)  # noqa: S608
            for table, row in rows.items():
                with pytest.raises((StoreError, sqlite3.IntegrityError), match="(?i)not.null"
                                   ), store.db.transaction() as tx:
                    insert(tx, table, {**row, key[table]: None})
            store.close()
    finally:
        drop_pg_database(name)
    with closing(sqlite3.connect(tmp_path / "old.db")) as conn:
        indexes = {r[1] for r in conn.execute("SELECT * FROM pragma_index_list('sessions')")}
    assert {"sessions_user_idx", "sessions_expires_idx"} <= indexes


# --- the comparison itself --------------------------------------------------------------


def test_comparison_reports_drift_planted_in_either_backend(
    tmp_path: Path, pg_template: str,
) -> None:
    """Schema changes made on one backend only show up, one readable line each."""
    path = tmp_path / "drift.db"
    store = open_store(f"sqlite:///{path}")
    store.migrate()
    store.close()
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            "ALTER TABLE jobs ADD COLUMN extra TEXT;"
            "DROP INDEX jobs_state_idx;"
            "CREATE INDEX jobs_state_idx ON jobs (state DESC, id);"
            "CREATE TABLE only_here (id INTEGER PRIMARY KEY, v TEXT CHECK (v <> ''));"
        )
        sq = read_sqlite(conn)
    name = new_pg_database(pg_template)
    try:
        with psycopg.connect(pg_url(name), autocommit=True) as conn_pg:
            conn_pg.execute("ALTER TABLE controls ALTER COLUMN reason DROP NOT NULL")
            conn_pg.execute("ALTER TABLE controls ALTER COLUMN value SET DEFAULT 'on'")
            conn_pg.execute("ALTER TABLE outbox ADD CHECK (kind <> 'nothing')")
            conn_pg.execute("ALTER TABLE evidence ADD COLUMN blob JSONB")
            conn_pg.execute("ALTER TABLE incident_events DROP CONSTRAINT"
                            " incident_events_incident_id_fkey")
            pg = read_postgres(conn_pg)
    finally:
        drop_pg_database(name)
    lines = {str(d) for d in compare(pg, sq)}
    expected = {
        "jobs.extra: column: postgres (none) vs sqlite text",
        "jobs_state_idx: index: postgres ON jobs (state, id)"
        " vs sqlite ON jobs (state DESC, id)",
        "only_here: table: postgres (none) vs sqlite table",
        "controls.reason: nullability: postgres NULL vs sqlite NOT NULL",
        "controls.value: default: postgres 'on' vs sqlite (none)",
        "outbox: check: postgres 1 x CHECK (kind <> 'nothing')"
        " vs sqlite 0 x CHECK (kind <> 'nothing')",
        "evidence.blob: column: postgres json vs sqlite (none)",
        "incident_events: foreign key: postgres (none)"
        " vs sqlite (incident_id) -> incidents (id)",
    }
    assert expected <= lines, report([d for d in compare(pg, sq)])


def test_reused_rowids_count_as_drift_only_against_a_sequence() -> None:
    """A SQLite rowid key matches a plain PostgreSQL key, not a BIGSERIAL one."""
    def schema(pk: Column) -> Schema:
        return Schema(tables={"t": Table(columns={"id": pk}, primary_key=("id",))})

    rowid, plain = Column("integer", False, ROWID), Column("integer", False, None)
    serial = Column("integer", False, "<autoincrement>")
    assert compare(schema(plain), schema(rowid)) == []
    assert [str(d) for d in compare(schema(serial), schema(rowid))] == [
        f"t.id: default: postgres <autoincrement> vs sqlite {ROWID}"]


@pytest.mark.parametrize(("postgres", "sqlite"), [
    ("(severity = ANY (ARRAY['P0'::text, 'P1'::text]))", "severity IN ('P0', 'P1')"),
    ("(((open_key IS NULL) = (state = ANY (ARRAY['a'::text]))))",
     "(open_key IS NULL) = (state IN ('a'))"),
    ("((actor)::text ~~ 'user:%'::text)", "actor LIKE 'user:%'"),
    ("(kind <> ALL (ARRAY['x'::character varying]))", "kind NOT IN ('x')"),
    ("(attempts >= 0)", "attempts>=0"),
])
def test_expressions_compare_equal_across_dialects(postgres: str, sqlite: str) -> None:
    """PostgreSQL's rendering of an expression and the SQLite source normalise alike."""
    assert normal_expr(tokens(postgres)) == normal_expr(tokens(sqlite))


@pytest.mark.parametrize(("a", "b"), [
    ("severity IN ('P0', 'P1')", "severity IN ('P0', 'p1')"),
    ("attempts >= 0", "attempts > 0"),
    ("state IN ('a')", "state NOT IN ('a')"),
])
def test_expressions_that_differ_stay_different(a: str, b: str) -> None:
    """Normalising keeps literals (case included) and operators."""
    assert normal_expr(tokens(a)) != normal_expr(tokens(b))


def test_sqlite_checks_are_read_past_comments_and_strings() -> None:
    """A CHECK inside a comment or a string literal is not a constraint."""
    sql = ("CREATE TABLE t (a TEXT DEFAULT 'CHECK (x)', -- CHECK (y)\n"
           " b INTEGER CHECK (b > 0), CONSTRAINT c CHECK (a <> ''))")
    assert sqlite_checks(sql) == ["b > 0", "a <> ''"]


def test_copies_of_a_schema_compare_equal(schemas: tuple[Schema, Schema]) -> None:
    """A schema compared with itself has no differences (the comparison is not noisy)."""
    pg, sq = schemas
    assert compare(pg, replace(pg)) == [
        Difference("function", f, "function", MISSING) for f in sorted(pg.functions)]
    assert compare(sq, replace(sq)) == []
