/*-------------------------------------------------------------------------
 *
 * lateral.c
 *	  The batched LATERAL join: SELECT ... FROM customers c CROSS JOIN
 *	  LATERAL pc_qualifications(c.tenant_id) q, at the bulk call's speed.
 *
 * PostgreSQL plans that query as a Nested Loop that calls the function
 * once per outer row, one request after another.  pcqual offers the planner
 * another join path (set_join_pathlist_hook) when the inner side is a
 * function scan of pc_qualifications(uuid) alone whose argument refers to
 * the outer side only, for an inner, left, semi or anti join (CROSS JOIN
 * LATERAL, LEFT JOIN LATERAL ... ON, EXISTS, NOT EXISTS): a CustomScan that
 * reads up to pcqual.lateral_batch_size outer rows, fetches the batch's
 * distinct non-NULL tenants concurrently through the bulk path
 * (functions.c: the same transport, token, retries, governor, statistics
 * and cancel), then emits each outer row joined with its tenant's rows, in
 * the outer side's order, as the Nested Loop would.  A customer that failed
 * raises its error when its outer row is reached, so that what the
 * statement returns or raises is the Nested Loop's; a LIMIT stops the
 * batches.
 *
 * Costs: a request costs pcqual.expected_latency (one cost unit per
 * millisecond).  The function scan of the Nested Loop pays it once per
 * outer row (set_rel_pathlist_hook adds it to that scan's cost); the batch
 * pays it once per round of pcqual.concurrency requests.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "optimizer/tlist.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "compat.h"
#include "pcqual.h"

/* pc_qualifications(uuid)'s columns, in order. */
#define INNER_COLUMNS 4
static const Oid inner_column_types[INNER_COLUMNS] = {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};

/* One cost unit per millisecond of a request. */
#define REQUEST_COST_PER_MS 1.0

/* The custom path's private list: what PlanCustomPath needs. */
enum
{
	PRIVATE_RESTRICTLIST,		/* the join's RestrictInfos */
	PRIVATE_INNER_QUALS,		/* the function scan's own RestrictInfos */
	PRIVATE_ARGUMENT,			/* the function's argument */
	PRIVATE_INNER_RELID,
	PRIVATE_JOINTYPE,
	PRIVATE_BATCH_SIZE
};

/* The plan's custom_private list. */
enum
{
	PLAN_JOINTYPE,
	PLAN_BATCH_SIZE,
	PLAN_SOURCES				/* per scan tuple column: outer column k > 0,
								 * or function column -a */
};

/* A tenant's outcome in the batch: its rows as column values, or why not. */
typedef struct TenantResult
{
	int			nrows;
	Datum	   *values;			/* nrows * INNER_COLUMNS */
	bool	   *nulls;
	bool		failed;
	PcqFailure	failure;
} TenantResult;

/* One outer row of the batch. */
typedef struct OuterRow
{
	MinimalTuple tuple;
	bool		tenant_null;
	pg_uuid_t	tenant;
} OuterRow;

typedef struct LateralState
{
	CustomScanState css;
	PlanState  *outer;
	ExprState  *tenant_expr;	/* over the scan tuple's outer columns */
	ExprState  *join_qual;		/* outer joins: what makes a row a match */
	JoinType	jointype;
	int			batch_size;
	int			nsources;
	int		   *sources;		/* see PLAN_SOURCES */
	TupleTableSlot *outer_slot;
	MemoryContext batch_cxt;

	/* the batch */
	OuterRow   *rows;
	int			nrows;
	int			pos;			/* next outer row to start */
	bool		outer_done;
	pg_uuid_t  *tenants;		/* sorted, distinct */
	TenantResult *results;		/* per tenant */
	int			ntenants;

	/* the outer row being joined */
	bool		in_row;
	TenantResult *current;
	int			inner_next;
	bool		matched;

	/* EXPLAIN ANALYZE */
	int64		batches;
	int64		tenants_fetched;
	int64		requests;
} LateralState;

static set_join_pathlist_hook_type prev_join_pathlist_hook = NULL;
static set_rel_pathlist_hook_type prev_rel_pathlist_hook = NULL;

static Plan *plan_lateral_path(PlannerInfo *root, RelOptInfo *rel,
							   CustomPath *best_path, List *tlist,
							   List *clauses, List *custom_plans);
static Node *create_lateral_state(CustomScan *cscan);
static void begin_lateral(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *exec_lateral(CustomScanState *node);
static void end_lateral(CustomScanState *node);
static void rescan_lateral(CustomScanState *node);
static void explain_lateral(CustomScanState *node, List *ancestors,
							ExplainState *es);

static const CustomPathMethods lateral_path_methods = {
	.CustomName = "PcqualBatchedLateral",
	.PlanCustomPath = plan_lateral_path,
};

static const CustomScanMethods lateral_scan_methods = {
	.CustomName = "PcqualBatchedLateral",
	.CreateCustomScanState = create_lateral_state,
};

static const CustomExecMethods lateral_exec_methods = {
	.CustomName = "PcqualBatchedLateral",
	.BeginCustomScan = begin_lateral,
	.ExecCustomScan = exec_lateral,
	.EndCustomScan = end_lateral,
	.ReScanCustomScan = rescan_lateral,
	.ExplainCustomScan = explain_lateral,
};

/* ---------------------------------------------------------------------
 * Planning
 * ---------------------------------------------------------------------
 */

/*
 * Whether funcid is pcqual's pc_qualifications(uuid): a C function of one
 * uuid whose symbol is pc_qualifications in a library named pcqual, in
 * whatever schema the extension is.
 */
static bool
is_pcqual_function(Oid funcid)
{
	HeapTuple	tp;
	Form_pg_proc proc;
	bool		ours = false;

	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (!HeapTupleIsValid(tp))
		return false;
	proc = (Form_pg_proc) GETSTRUCT(tp);
	if (proc->prolang == ClanguageId && proc->pronargs == 1 &&
		proc->proargtypes.values[0] == UUIDOID && proc->proretset)
	{
		bool		isnull;
		Datum		src = SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_prosrc, &isnull);
		Datum		bin;

		if (!isnull && strcmp(TextDatumGetCString(src), "pc_qualifications") == 0)
		{
			bin = SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_probin, &isnull);
			if (!isnull)
			{
				char	   *lib = TextDatumGetCString(bin);
				size_t		len = strlen(lib);

				ours = len >= 6 && strcmp(lib + len - 6, "pcqual") == 0 &&
					(len == 6 || lib[len - 7] == '/');
			}
		}
	}
	ReleaseSysCache(tp);
	return ours;
}

/* The call of a function RTE, when it is pc_qualifications(uuid) alone. */
static FuncExpr *
pcqual_function_call(PlannerInfo *root, RelOptInfo *rel)
{
	RangeTblEntry *rte;
	RangeTblFunction *rtfunc;
	FuncExpr   *call;

	if (rel->reloptkind != RELOPT_BASEREL || rel->rtekind != RTE_FUNCTION)
		return NULL;
	rte = planner_rt_fetch(rel->relid, root);
	if (list_length(rte->functions) != 1 || rte->funcordinality)
		return NULL;
	rtfunc = linitial_node(RangeTblFunction, rte->functions);
	if (!IsA(rtfunc->funcexpr, FuncExpr))
		return NULL;
	call = (FuncExpr *) rtfunc->funcexpr;
	if (list_length(call->args) != 1 || !is_pcqual_function(call->funcid))
		return NULL;
	return call;
}

/* The latency of one request, in cost units. */
static Cost
request_cost(void)
{
	return pcq_expected_latency_ms * REQUEST_COST_PER_MS;
}

/*
 * A scan of pc_qualifications(uuid) costs a request: what a Nested Loop
 * pays once per outer row.  (The function's declared COST counts CPU.)  It
 * is run cost, not startup cost: the planner takes a function scan's
 * rescan to cost its run cost alone (a function scan of unchanged
 * arguments reads its stored result again), and each outer row's request
 * must count.
 */
static void
cost_function_scans(PlannerInfo *root, RelOptInfo *rel, Index rti,
					RangeTblEntry *rte)
{
	ListCell   *lc;

	if (prev_rel_pathlist_hook)
		prev_rel_pathlist_hook(root, rel, rti, rte);
	if (rte->rtekind != RTE_FUNCTION || pcqual_function_call(root, rel) == NULL)
		return;
	foreach(lc, rel->pathlist)
	{
		Path	   *path = (Path *) lfirst(lc);

		path->total_cost += request_cost();
	}
}

/*
 * Whether every Var in node is a column of the function (1 to 4) or one
 * the outer side provides: the node's scan tuple is made of those.
 */
static bool
vars_are_supported(Node *node, RelOptInfo *outerrel, Index inner_relid)
{
	List	   *vars = pull_var_clause(node, PVC_INCLUDE_PLACEHOLDERS);
	ListCell   *lc;

	foreach(lc, vars)
	{
		Var		   *var = (Var *) lfirst(lc);

		if (!IsA(var, Var) || var->varlevelsup != 0)
			return false;
		if (var->varno == inner_relid)
		{
			if (var->varattno < 1 || var->varattno > INNER_COLUMNS)
				return false;
		}
		else if (!bms_is_member(var->varno, outerrel->relids))
			return false;
	}
	return true;
}

/* Every entry of a reltarget is a plain Var. */
static bool
target_is_plain_vars(PathTarget *target)
{
	ListCell   *lc;

	foreach(lc, target->exprs)
	{
		if (!IsA(lfirst(lc), Var))
			return false;
	}
	return true;
}

static bool
has_pseudoconstant(List *restrictlist)
{
	ListCell   *lc;

	foreach(lc, restrictlist)
	{
		if (lfirst_node(RestrictInfo, lc)->pseudoconstant)
			return true;
	}
	return false;
}

/*
 * The batch's costs: reading the outer side, one request per outer row
 * (distinct tenants are not estimated: at most that), pcqual.concurrency
 * of them at a time, per batch; the first batch before the first row.
 */
static void
cost_lateral_path(PlannerInfo *root, CustomPath *cpath, Path *outer_path,
				  RelOptInfo *joinrel, List *quals)
{
	double		outer_rows = Max(outer_path->rows, 1.0);
	double		batch = Min(outer_rows, (double) pcq_lateral_batch_size);
	double		rounds = ceil(batch / pcq_concurrency);
	double		batches = ceil(outer_rows / pcq_lateral_batch_size);
	QualCost	qual_cost;

	cost_qual_eval(&qual_cost, quals, root);
	cpath->path.rows = joinrel->rows;
	cpath->path.startup_cost = outer_path->startup_cost +
		(outer_path->total_cost - outer_path->startup_cost) * (batch / outer_rows) +
		rounds * request_cost();
	cpath->path.total_cost = outer_path->total_cost +
		batches * rounds * request_cost() +
		outer_rows * cpu_operator_cost +
		joinrel->rows * (cpu_tuple_cost + qual_cost.per_tuple) +
		qual_cost.startup;
	pcq_path_copy_disabled_nodes(&cpath->path, outer_path);
}

/*
 * set_join_pathlist_hook: offer the batch for outer CROSS JOIN LATERAL
 * pc_qualifications(outer expression), its LEFT JOIN ... ON form, and the
 * semi and anti joins of EXISTS and NOT EXISTS over it.  Anything else
 * keeps the planner's own paths only.
 */
static void
add_lateral_path(PlannerInfo *root, RelOptInfo *joinrel, RelOptInfo *outerrel,
				 RelOptInfo *innerrel, JoinType jointype,
				 JoinPathExtraData *extra)
{
	FuncExpr   *call;
	Node	   *arg;
	Path	   *outer_path;
	CustomPath *cpath;
	List	   *quals;

	if (prev_join_pathlist_hook)
		prev_join_pathlist_hook(root, joinrel, outerrel, innerrel, jointype, extra);
	if (!pcq_batch_lateral ||
		(jointype != JOIN_INNER && jointype != JOIN_LEFT &&
		 jointype != JOIN_SEMI && jointype != JOIN_ANTI))
		return;
	/*
	 * Only in a SELECT without row locks: an UPDATE ... FROM or a FOR UPDATE
	 * may recheck a joined row (EvalPlanQual), which the batch, having no
	 * single inner row to recheck, would get wrong.
	 */
	if (root->parse->commandType != CMD_SELECT || root->rowMarks != NIL)
		return;
	call = pcqual_function_call(root, innerrel);
	if (call == NULL)
		return;
	arg = linitial(call->args);

	/* the argument refers to the outer side, and only to it */
	if (bms_is_empty(innerrel->lateral_relids) ||
		!bms_is_subset(innerrel->lateral_relids, outerrel->relids) ||
		!bms_is_subset(pull_varnos(root, arg), outerrel->relids) ||
		contain_volatile_functions(arg))
		return;
	/* nothing outside this join is needed: the path is unparameterized */
	if (!bms_is_empty(joinrel->lateral_relids) ||
		!bms_is_empty(outerrel->lateral_relids))
		return;
	outer_path = outerrel->cheapest_total_path;
	if (outer_path == NULL || outer_path->param_info != NULL)
		return;
	if (has_pseudoconstant(extra->restrictlist) ||
		has_pseudoconstant(innerrel->baserestrictinfo))
		return;
	/* the scan tuple holds plain columns of either side */
	if (!target_is_plain_vars(outerrel->reltarget) ||
		!target_is_plain_vars(joinrel->reltarget))
		return;
	quals = list_concat(extract_actual_clauses(extra->restrictlist, false),
						extract_actual_clauses(innerrel->baserestrictinfo, false));
	if (!vars_are_supported((Node *) joinrel->reltarget->exprs, outerrel, innerrel->relid) ||
		!vars_are_supported((Node *) quals, outerrel, innerrel->relid) ||
		!vars_are_supported(arg, outerrel, innerrel->relid))
		return;

	cpath = makeNode(CustomPath);
	cpath->path.pathtype = T_CustomScan;
	cpath->path.parent = joinrel;
	cpath->path.pathtarget = joinrel->reltarget;
	cpath->path.param_info = NULL;
	cpath->path.parallel_aware = false;
	cpath->path.parallel_safe = false;
	cpath->path.parallel_workers = 0;
	/* the outer side's order, as a Nested Loop keeps it */
	cpath->path.pathkeys = build_join_pathkeys(root, joinrel, jointype,
											   outer_path->pathkeys);
	cpath->flags = CUSTOMPATH_SUPPORT_PROJECTION;
	cpath->custom_paths = list_make1(outer_path);
	cpath->custom_private = list_make5(extra->restrictlist,
									   innerrel->baserestrictinfo,
									   arg,
									   makeInteger(innerrel->relid),
									   makeInteger(jointype));
	cpath->custom_private = lappend(cpath->custom_private,
									makeInteger(pcq_lateral_batch_size));
	cpath->methods = &lateral_path_methods;
	cost_lateral_path(root, cpath, outer_path, joinrel, quals);
	add_path(joinrel, &cpath->path);
}

/* The position of var among the outer plan's output columns (1-based). */
static int
outer_column(List *outer_tlist, Var *var)
{
	ListCell   *lc;

	foreach(lc, outer_tlist)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		Var		   *v = (Var *) tle->expr;

		if (IsA(v, Var) && v->varno == var->varno && v->varattno == var->varattno &&
			v->varlevelsup == 0)
			return tle->resno;
	}
	elog(ERROR, "pcqual's batched join found no outer column for variable %d.%d",
		 var->varno, var->varattno);
	return 0;					/* keep the compiler quiet */
}

/* The function's columns as the scan tuple holds them (see below). */
typedef struct InnerColumns
{
	Index		relid;
	Var		   *columns[INNER_COLUMNS];
} InnerColumns;

/* The function's Vars of an expression, marked as the scan tuple's are. */
static Node *
mark_inner_vars(Node *node, InnerColumns *inner)
{
	if (node == NULL)
		return NULL;
	if (IsA(node, Var) && ((Var *) node)->varno == inner->relid &&
		((Var *) node)->varlevelsup == 0)
	{
		Var		   *var = (Var *) copyObject(node);

		Assert(var->varattno >= 1 && var->varattno <= INNER_COLUMNS);
		pcq_var_copy_nullingrels(var, inner->columns[var->varattno - 1]);
		return (Node *) var;
	}
	return expression_tree_mutator(node, mark_inner_vars, inner);
}

/*
 * The function's four columns for the scan tuple: as the target list and
 * the quals above the join write them (a LEFT JOIN's output marks them as
 * nullable by the join, PostgreSQL 16+), else plain.  The ON clauses, which
 * see them before the join nulls anything, are marked the same way after:
 * the executor ignores the marks, setrefs wants one per column.
 */
static void
choose_inner_columns(InnerColumns *inner, Index relid, List *above_join)
{
	List	   *vars = pull_var_clause((Node *) above_join, 0);
	ListCell   *lc;
	int			a;

	inner->relid = relid;
	memset(inner->columns, 0, sizeof(inner->columns));
	foreach(lc, vars)
	{
		Var		   *var = lfirst(lc);

		if (var->varno == relid && var->varlevelsup == 0 &&
			inner->columns[var->varattno - 1] == NULL)
			inner->columns[var->varattno - 1] = var;
	}
	for (a = 1; a <= INNER_COLUMNS; a++)
		if (inner->columns[a - 1] == NULL)
			inner->columns[a - 1] = makeVar(relid, a, inner_column_types[a - 1], -1,
											inner_column_types[a - 1] == TEXTOID ?
											DEFAULT_COLLATION_OID : InvalidOid, 0);
}

/*
 * The plan: the scan tuple (custom_scan_tlist) holds the outer plan's
 * columns, the function's four (choose_inner_columns), and every other Var
 * the target list and quals use; sources says where each comes from.
 */
static Plan *
plan_lateral_path(PlannerInfo *root, RelOptInfo *rel, CustomPath *best_path,
				  List *tlist, List *clauses, List *custom_plans)
{
	List	   *priv = best_path->custom_private;
	List	   *restrictlist = list_nth(priv, PRIVATE_RESTRICTLIST);
	List	   *inner_rinfos = list_nth(priv, PRIVATE_INNER_QUALS);
	Node	   *arg = list_nth(priv, PRIVATE_ARGUMENT);
	Index		inner_relid = intVal(list_nth(priv, PRIVATE_INNER_RELID));
	JoinType	jointype = intVal(list_nth(priv, PRIVATE_JOINTYPE));
	Plan	   *outer_plan = linitial(custom_plans);
	List	   *inner_quals = extract_actual_clauses(inner_rinfos, false);
	List	   *plan_quals;
	List	   *join_quals = NIL;
	List	   *scan_tlist = NIL;
	List	   *sources = NIL;
	InnerColumns inner;
	CustomScan *cscan;
	ListCell   *lc;
	int			a;

	if (jointype != JOIN_INNER)
	{
		/* ON decides a match; the function's own quals are part of it */
		extract_actual_join_clauses(restrictlist, rel->relids, &join_quals, &plan_quals);
		join_quals = list_concat(join_quals, inner_quals);
	}
	else
		plan_quals = list_concat(extract_actual_clauses(restrictlist, false), inner_quals);

	/*
	 * The join's output columns from its path target, not from tlist: a
	 * projection above may give this node no tlist now (CP_IGNORE_TLIST)
	 * and its own expressions later, over those columns.
	 */
	choose_inner_columns(&inner, inner_relid,
						 list_concat(list_copy(best_path->path.pathtarget->exprs), plan_quals));
	join_quals = (List *) mark_inner_vars((Node *) join_quals, &inner);
	foreach(lc, outer_plan->targetlist)
		scan_tlist = add_to_flat_tlist(scan_tlist, list_make1(lfirst_node(TargetEntry, lc)->expr));
	for (a = 1; a <= INNER_COLUMNS; a++)
		scan_tlist = add_to_flat_tlist(scan_tlist, list_make1(inner.columns[a - 1]));
	scan_tlist = add_to_flat_tlist(scan_tlist,
								   pull_var_clause((Node *) best_path->path.pathtarget->exprs, 0));
	scan_tlist = add_to_flat_tlist(scan_tlist, pull_var_clause((Node *) tlist, 0));
	scan_tlist = add_to_flat_tlist(scan_tlist, pull_var_clause((Node *) plan_quals, 0));
	scan_tlist = add_to_flat_tlist(scan_tlist, pull_var_clause((Node *) join_quals, 0));
	scan_tlist = add_to_flat_tlist(scan_tlist, pull_var_clause(arg, 0));
	foreach(lc, scan_tlist)
	{
		Var		   *var = (Var *) lfirst_node(TargetEntry, lc)->expr;

		Assert(IsA(var, Var));
		sources = lappend_int(sources, var->varno == inner_relid ?
							  -var->varattno : outer_column(outer_plan->targetlist, var));
	}

	cscan = makeNode(CustomScan);
	cscan->scan.plan.targetlist = tlist;
	cscan->scan.plan.qual = plan_quals;
	cscan->scan.scanrelid = 0;
	cscan->flags = best_path->flags;
	cscan->custom_plans = custom_plans;
	cscan->custom_exprs = list_make2(arg, join_quals);
	cscan->custom_private = list_make3(makeInteger(jointype),
									   makeInteger(intVal(list_nth(priv, PRIVATE_BATCH_SIZE))),
									   sources);
	cscan->custom_scan_tlist = scan_tlist;
	cscan->custom_relids = rel->relids;
	cscan->methods = &lateral_scan_methods;
	return &cscan->scan.plan;
}

/* ---------------------------------------------------------------------
 * Execution
 * ---------------------------------------------------------------------
 */

static Node *
create_lateral_state(CustomScan *cscan)
{
	LateralState *ls = palloc0(sizeof(LateralState));

	NodeSetTag(ls, T_CustomScanState);
	ls->css.methods = &lateral_exec_methods;
	ls->css.flags = cscan->flags;
	return (Node *) ls;
}

static void
begin_lateral(CustomScanState *node, EState *estate, int eflags)
{
	LateralState *ls = (LateralState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	List	   *sources = list_nth(cscan->custom_private, PLAN_SOURCES);
	ListCell   *lc;
	int			i = 0;

	ls->jointype = intVal(list_nth(cscan->custom_private, PLAN_JOINTYPE));
	ls->batch_size = intVal(list_nth(cscan->custom_private, PLAN_BATCH_SIZE));
	ls->nsources = list_length(sources);
	ls->sources = palloc(sizeof(int) * Max(ls->nsources, 1));
	foreach(lc, sources)
		ls->sources[i++] = lfirst_int(lc);

	ls->outer = ExecInitNode(linitial(cscan->custom_plans), estate, eflags);
	node->custom_ps = list_make1(ls->outer);
	ls->tenant_expr = ExecInitExpr(linitial(cscan->custom_exprs), &node->ss.ps);
	ls->join_qual = ExecInitQual(lsecond(cscan->custom_exprs), &node->ss.ps);
	ls->outer_slot = MakeSingleTupleTableSlot(ExecGetResultType(ls->outer),
											  &TTSOpsMinimalTuple);
	ls->batch_cxt = AllocSetContextCreate(estate->es_query_cxt,
										  "pcqual batched join",
										  ALLOCSET_DEFAULT_SIZES);
	ls->rows = MemoryContextAllocHuge(estate->es_query_cxt,
									  sizeof(OuterRow) * ls->batch_size);
}

/*
 * The scan tuple for the outer row in ls->outer_slot and, unless
 * null-extended, the function's row r of result.
 */
static TupleTableSlot *
fill_scan_tuple(LateralState *ls, const TenantResult *result, int r)
{
	TupleTableSlot *slot = ls->css.ss.ss_ScanTupleSlot;
	int			i;

	ExecClearTuple(slot);
	for (i = 0; i < ls->nsources; i++)
	{
		int			source = ls->sources[i];

		if (source > 0)
		{
			slot->tts_values[i] = ls->outer_slot->tts_values[source - 1];
			slot->tts_isnull[i] = ls->outer_slot->tts_isnull[source - 1];
		}
		else if (result != NULL)
		{
			slot->tts_values[i] = result->values[r * INNER_COLUMNS - source - 1];
			slot->tts_isnull[i] = result->nulls[r * INNER_COLUMNS - source - 1];
		}
		else
		{
			slot->tts_values[i] = (Datum) 0;
			slot->tts_isnull[i] = true;
		}
	}
	return ExecStoreVirtualTuple(slot);
}

static int
compare_tenants(const void *a, const void *b)
{
	return memcmp(a, b, UUID_LEN);
}

static TenantResult *
result_of(LateralState *ls, const pg_uuid_t *tenant)
{
	pg_uuid_t  *found = bsearch(tenant, ls->tenants, ls->ntenants,
								sizeof(pg_uuid_t), compare_tenants);

	if (found == NULL)
		elog(ERROR, "pcqual's batched join lost a tenant of its batch");
	return &ls->results[found - ls->tenants];
}

static char *
copy_or_null(const char *s)
{
	return s ? pstrdup(s) : NULL;
}

/* functions.c hands over one customer: keep its rows as column values. */
static void
keep_result(void *arg, const pg_uuid_t *tenant, List *rows,
			const PcqFailure *failure, int attempts)
{
	LateralState *ls = (LateralState *) arg;
	TenantResult *result = result_of(ls, tenant);
	MemoryContext oldcxt = MemoryContextSwitchTo(ls->batch_cxt);
	ListCell   *lc;
	int			r = 0;

	ls->requests += attempts;
	if (failure != NULL)
	{
		result->failed = true;
		result->failure.sqlstate = failure->sqlstate;
		result->failure.message = copy_or_null(failure->message);
		result->failure.detail = copy_or_null(failure->detail);
		result->failure.hint = copy_or_null(failure->hint);
	}
	else
	{
		result->nrows = list_length(rows);
		result->values = palloc(sizeof(Datum) * INNER_COLUMNS * Max(result->nrows, 1));
		result->nulls = palloc(sizeof(bool) * INNER_COLUMNS * Max(result->nrows, 1));
		foreach(lc, rows)
		{
			PcqQualification *q = lfirst(lc);
			Datum	   *v = &result->values[r * INNER_COLUMNS];
			bool	   *n = &result->nulls[r * INNER_COLUMNS];

			v[0] = pcq_nullable_text(q->qualification, &n[0]);
			v[1] = pcq_nullable_text(q->vetting_status, &n[1]);
			v[2] = pcq_nullable_text(q->vetting_reason, &n[2]);
			v[3] = TimestampTzGetDatum(q->vetting_created_date);
			n[3] = !q->has_created_date;
			r++;
		}
	}
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Read the next batch of outer rows, each with its tenant, and fetch the
 * batch's distinct tenants.  Leaves ls->nrows 0 at the end of the outer
 * side.
 */
static void
read_batch(LateralState *ls)
{
	ExprContext *econtext = ls->css.ss.ps.ps_ExprContext;
	MemoryContext oldcxt;
	int			i;

	MemoryContextReset(ls->batch_cxt);
	ls->nrows = ls->pos = ls->ntenants = 0;
	if (ls->outer_done)
		return;
	while (ls->nrows < ls->batch_size)
	{
		TupleTableSlot *outer;
		OuterRow   *row = &ls->rows[ls->nrows];
		Datum		tenant;

		CHECK_FOR_INTERRUPTS();
		/* in the executor's context: the outer side may set itself up now */
		outer = ExecProcNode(ls->outer);
		if (TupIsNull(outer))
		{
			ls->outer_done = true;
			break;
		}
		oldcxt = MemoryContextSwitchTo(ls->batch_cxt);
		row->tuple = ExecCopySlotMinimalTuple(outer);
		MemoryContextSwitchTo(oldcxt);
		ExecStoreMinimalTuple(row->tuple, ls->outer_slot, false);
		slot_getallattrs(ls->outer_slot);
		econtext->ecxt_scantuple = fill_scan_tuple(ls, NULL, 0);
		tenant = ExecEvalExprSwitchContext(ls->tenant_expr, econtext, &row->tenant_null);
		if (!row->tenant_null)
			row->tenant = *DatumGetUUIDP(tenant);
		ResetExprContext(econtext);
		ls->nrows++;
	}

	/* the distinct non-NULL tenants, sorted, as the bulk path takes them */
	oldcxt = MemoryContextSwitchTo(ls->batch_cxt);
	ls->tenants = palloc(sizeof(pg_uuid_t) * Max(ls->nrows, 1));
	for (i = 0; i < ls->nrows; i++)
		if (!ls->rows[i].tenant_null)
			ls->tenants[ls->ntenants++] = ls->rows[i].tenant;
	qsort(ls->tenants, ls->ntenants, sizeof(pg_uuid_t), compare_tenants);
	if (ls->ntenants > 0)
	{
		int			n = 1;

		for (i = 1; i < ls->ntenants; i++)
			if (compare_tenants(&ls->tenants[i], &ls->tenants[n - 1]) != 0)
				ls->tenants[n++] = ls->tenants[i];
		ls->ntenants = n;
	}
	ls->results = palloc0(sizeof(TenantResult) * Max(ls->ntenants, 1));
	if (ls->ntenants > 0)
		pcq_fetch_customers(ls->tenants, ls->ntenants, keep_result, ls);
	MemoryContextSwitchTo(oldcxt);
	if (ls->nrows > 0)
		ls->batches++;
	ls->tenants_fetched += ls->ntenants;
}

/*
 * Start joining the next outer row: its tenant's rows, or its failure
 * raised as pc_qualifications(uuid) would raise it for that row.
 */
static void
start_outer_row(LateralState *ls)
{
	OuterRow   *row = &ls->rows[ls->pos++];

	ExecStoreMinimalTuple(row->tuple, ls->outer_slot, false);
	slot_getallattrs(ls->outer_slot);
	ls->current = row->tenant_null ? NULL : result_of(ls, &row->tenant);
	if (ls->current != NULL && ls->current->failed)
		pcq_raise(&ls->current->failure, ERROR);
	ls->inner_next = 0;
	ls->matched = false;
	ls->in_row = true;
}

/* ExecScan's access method: the next joined row, as the Nested Loop's. */
static TupleTableSlot *
next_joined_row(ScanState *ss)
{
	LateralState *ls = (LateralState *) ss;
	ExprContext *econtext = ss->ps.ps_ExprContext;

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ls->in_row)
		{
			int			nrows = ls->current ? ls->current->nrows : 0;

			while (ls->inner_next < nrows)
			{
				TupleTableSlot *slot = fill_scan_tuple(ls, ls->current, ls->inner_next++);

				econtext->ecxt_scantuple = slot;
				if (ls->join_qual == NULL || ExecQual(ls->join_qual, econtext))
				{
					ls->matched = true;
					/* a semi join's outer row once, an anti join's never */
					if (ls->jointype == JOIN_SEMI || ls->jointype == JOIN_ANTI)
						ls->inner_next = nrows;
					if (ls->jointype != JOIN_ANTI)
						return slot;
				}
			}
			ls->in_row = false;
			if ((ls->jointype == JOIN_LEFT || ls->jointype == JOIN_ANTI) && !ls->matched)
				return fill_scan_tuple(ls, NULL, 0);
		}
		if (ls->pos >= ls->nrows)
		{
			read_batch(ls);
			if (ls->nrows == 0)
				return ExecClearTuple(ss->ss_ScanTupleSlot);
		}
		start_outer_row(ls);
	}
}

/* Nothing to recheck: no EvalPlanQual on a function's rows. */
static bool
recheck_joined_row(ScanState *ss, TupleTableSlot *slot)
{
	return true;
}

static TupleTableSlot *
exec_lateral(CustomScanState *node)
{
	return ExecScan(&node->ss, next_joined_row, recheck_joined_row);
}

static void
forget_batch(LateralState *ls)
{
	MemoryContextReset(ls->batch_cxt);
	ls->nrows = ls->pos = ls->ntenants = 0;
	ls->in_row = false;
	ls->current = NULL;
	ls->outer_done = false;
}

static void
end_lateral(CustomScanState *node)
{
	LateralState *ls = (LateralState *) node;

	ExecEndNode(ls->outer);
	ExecDropSingleTupleTableSlot(ls->outer_slot);
	MemoryContextDelete(ls->batch_cxt);
}

/* A rescan starts over from the outer side's first row, fetching again. */
static void
rescan_lateral(CustomScanState *node)
{
	LateralState *ls = (LateralState *) node;

	forget_batch(ls);
	if (node->ss.ps.chgParam != NULL)
		UpdateChangedParamSet(ls->outer, node->ss.ps.chgParam);
	if (ls->outer->chgParam == NULL)
		ExecReScan(ls->outer);
}

static void
explain_lateral(CustomScanState *node, List *ancestors, ExplainState *es)
{
	LateralState *ls = (LateralState *) node;

	ExplainPropertyInteger("Batch Size", NULL, ls->batch_size, es);
	if (es->analyze)
	{
		ExplainPropertyInteger("Batches", NULL, ls->batches, es);
		ExplainPropertyInteger("Tenants Fetched", NULL, ls->tenants_fetched, es);
		ExplainPropertyInteger("Requests", NULL, ls->requests, es);
	}
}

/* _PG_init: the planner's hooks and the plan node's methods. */
void
pcq_lateral_install(void)
{
	RegisterCustomScanMethods(&lateral_scan_methods);
	prev_join_pathlist_hook = set_join_pathlist_hook;
	set_join_pathlist_hook = add_lateral_path;
	prev_rel_pathlist_hook = set_rel_pathlist_hook;
	set_rel_pathlist_hook = cost_function_scans;
}
