"""T-SQL forms the host engine would read otherwise: `TOP n PERCENT` rounds up, `WITH TIES` keeps the rows tied with
the last, `FOR JSON` / `FOR XML`, which sqlglot drops with a warning, are refused, `OPTION (…)` query hints are
dropped (quietly: they change no result), CROSS / OUTER APPLY are CROSS / LEFT JOIN LATERAL … ON TRUE, and on DuckDB
`DELETE t FROM t JOIN u ON …` is `DELETE FROM t USING u WHERE …`.

sqlglot prints both as LIMIT clauses DuckDB reads otherwise (`LIMIT 10 PERCENT` rounds down: 9 of 95 rows where SQL
Server returns 10) or not at all (`LIMIT 5 WITH TIES`). On DuckDB they become a QUALIFY in the query's own order:

    SELECT TOP 10 PERCENT WITH TIES a FROM t ORDER BY a
    SELECT a FROM t QUALIFY RANK() OVER (ORDER BY a) <= CEIL(COUNT(*) OVER () * 10 / 100.0) ORDER BY a

(ROW_NUMBER() without WITH TIES). Spark SQL has no QUALIFY, and sqlglot's rewrite of one loses the ORDER BY, so there
they are a BindError that names the window function to write.
"""

from __future__ import annotations

from sqlglot import exp

from predictsql.engine.errors import BindError
from predictsql.sql.dialect import to_sql

_TO_JSON = {"duckdb": "DuckDB's to_json(…) or COPY … TO 'f.json'", "spark": "Spark's to_json(struct(…))"}


def adapt(tree: exp.Expr, host: str) -> exp.Expr:
    """A T-SQL tree as `host` should run it (see the module docstring); in place."""
    clause = next((s.args["for_"] for s in tree.find_all(exp.Select) if s.args.get("for_")), None)
    if clause is not None:
        written = " ".join(to_sql(c, "tsql") for c in (clause if isinstance(clause, list) else [clause]))
        raise BindError(f"{written}: T-SQL's rows as one JSON or XML text have no {host} form; select the rows and convert them ({_TO_JSON.get(host, 'to_json')})")
    for select in tree.find_all(exp.Select):
        select.set("options", None)  # OPTION (MAXDOP 1, LABEL = …): SQL Server's query hints, which no host takes
    for join in tree.find_all(exp.Join):  # CROSS / OUTER APPLY: sqlglot prints [LEFT] JOIN LATERAL without ON, which DuckDB refuses
        lateral = join.this
        if isinstance(lateral, exp.Lateral) and lateral.args.get("cross_apply") is not None:
            if lateral.args["cross_apply"]:
                join.set("kind", "CROSS")
            else:
                join.set("side", "LEFT")
                join.set("on", exp.true())
            lateral.set("cross_apply", None)
    if host == "duckdb":
        for delete in tree.find_all(exp.Delete):
            _delete_using(delete)
    return _top(tree, host)


def _delete_using(delete: exp.Delete) -> None:
    """T-SQL's DELETE t FROM t JOIN u ON c WHERE w as DuckDB's DELETE FROM t USING u WHERE c AND w (sqlglot prints it
    unchanged, which DuckDB cannot parse); an outer join keeps rows USING would drop, so it is refused."""
    targets, source = delete.args.get("tables") or [], delete.this
    joins = source.args.get("joins") if isinstance(source, exp.Table) else None
    if not targets or not joins:
        return
    written = f"DELETE {to_sql(targets[0], 'tsql')} FROM … JOIN"
    if any(j.side or j.args.get("using") or j.kind not in ("", "INNER", "CROSS") for j in joins):
        raise BindError(f"{written} with an outer join or JOIN … USING: write DELETE FROM <table> WHERE [NOT] EXISTS (SELECT … WHERE …)")
    source.set("joins", None)
    sources = [source, *(j.this for j in joins)]  # an inner join's sources are symmetric: any one may be the target
    target = next((t for t in sources if isinstance(t, exp.Table) and t.alias_or_name.lower() == targets[0].name.lower()), None)
    if len(targets) != 1 or target is None:
        raise BindError(f"{written}: name one table of FROM to delete from, by its alias where it has one")
    conditions = [j.args["on"] for j in joins if j.args.get("on")]
    where = delete.args.get("where")
    if where is not None:
        conditions.append(where.this)
    delete.set("tables", None)
    delete.set("this", target.pop() if target is not source else target)
    delete.set("using", [t for t in sources if t is not target])
    if conditions:
        delete.set("where", exp.Where(this=exp.and_(*(exp.paren(c, copy=False) for c in conditions), copy=False)))


def _top(tree: exp.Expr, host: str) -> exp.Expr:
    """Rewrite each SELECT TOP … PERCENT | WITH TIES for `host`."""
    for select, (percent, ties) in [(s, o) for s in tree.find_all(exp.Select) if (o := _options(s)) is not None]:
        order = select.args.get("order")
        written = f"SELECT TOP … {'PERCENT' if percent else ''}{' ' if percent and ties else ''}{'WITH TIES' if ties else ''}"
        if host != "duckdb":
            raise BindError(f"{written}: {host} SQL has no such limit; number the rows with {'RANK' if ties else 'ROW_NUMBER'}() OVER (ORDER BY …) in a subquery and filter on it")
        if ties and order is None:
            raise BindError(f"{written} needs an ORDER BY: the ties are of the last row in that order")
        if select.args.get("distinct"):
            raise BindError(f"{written} over SELECT DISTINCT: take the TOP of a subquery that is the DISTINCT query")
        count = select.args["limit"].expression
        ranked = exp.Window(this=exp.Anonymous(this="RANK" if ties else "ROW_NUMBER"), order=_window_order(select, order, written))
        bound = exp.Ceil(this=exp.Div(this=exp.Mul(this=exp.Window(this=exp.Count(this=exp.Star())), expression=count.copy()), expression=exp.Literal.number("100.0"))) if percent else count.copy()
        select.set("limit", None)
        select.set("qualify", exp.Qualify(this=exp.LTE(this=ranked, expression=bound)))
    return tree


def _options(select: exp.Select) -> tuple[bool, bool] | None:
    """(PERCENT, WITH TIES) of a SELECT TOP that has either, else None."""
    limit = select.args.get("limit")
    options = limit.args.get("limit_options") if isinstance(limit, exp.Limit) else None
    if options is None or not (options.args.get("percent") or options.args.get("with_ties")):
        return None
    return bool(options.args.get("percent")), bool(options.args.get("with_ties"))


def _window_order(select: exp.Select, order: exp.Order | None, written: str) -> exp.Order | None:
    """The query's ORDER BY for the window, with T-SQL's meaning: a position (ORDER BY 2) or a SELECT alias replaced by
    the item it names (in a window a number is a constant, and a name DuckDB's source column); an item that is itself a
    window function cannot rank inside another."""
    if order is None:
        return None
    window = order.copy()
    items = select.expressions
    aliases = {item.alias.lower(): item for item in items if isinstance(item, exp.Alias)}
    for ordered in window.expressions:
        key = ordered.this
        if isinstance(key, exp.Literal) and key.is_int:
            position = int(key.this)
            if not 1 <= position <= len(items) or isinstance(items[position - 1], exp.Star):
                raise BindError(f"{written} ORDER BY {position}: name the column ({to_sql(order)} has no SELECT item {position} to rank by)")
            ordered.set("this", items[position - 1].unalias().copy())
        elif isinstance(key, exp.Column) and not key.table and key.name.lower() in aliases:
            ordered.set("this", aliases[key.name.lower()].unalias().copy())
        if ordered.this.find(exp.Window) is not None:
            raise BindError(f"{written} ORDER BY {to_sql(key)}, a window function: number the rows in a subquery and take the TOP of it")
    return window
