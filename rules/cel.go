package rules

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/library"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/lru"
)

// Limits of one CEL evaluation, in one place.
const (
	// CostLimit is the API server's per-call limit for a CEL expression (about 0.1 s of work).
	CostLimit uint64 = 1_000_000
	// EvalTimeout bounds one evaluation in wall time.
	EvalTimeout = 100 * time.Millisecond
	// interruptEvery is how often (in comprehension iterations) an evaluation checks its
	// context.
	interruptEvery = 100
	// DefaultCacheSize bounds the compiled programs an environment keeps (Options.CacheSize):
	// room for every guard and condition of a few hundred workflows. Past it, the least recently
	// used program is forgotten, and compiled again if it is needed again.
	DefaultCacheSize = 4096
)

// Variables every expression may use. Values are maps built from the run's snapshot and status.
const (
	VarParams     = "params"     // the workflow's resolved parameters, by name
	VarPlan       = "plan"       // name, namespace, failurePolicy, currentExecution
	VarExecution  = "execution"  // name, namespace, operation, phase
	VarStage      = "stage"      // the stage being decided: name, dependsOn, parallel
	VarStages     = "stages"     // every stage by name: phase, message
	VarWorkflow   = "workflow"   // the workflow being decided: name, namespace, index
	VarActions    = "actions"    // the workflow's actions by name: phase, message, outputs
	VarOperation  = "operation"  // Execute or Revert
	VarNow        = "now"        // the evaluation time
	VarLockHolder = "lockHolder" // the execution named by the plan's lock: name, exists, finished
	VarResponse   = "response"   // an HTTP action's response (successCondition): code, headers, body, json
	VarObject     = "object"     // the object an action waits on (waitFor)
	VarTarget     = "target"     // the execution a Revert undoes (RevertEligible)
)

// programOptions bound every evaluation: the cost limit, counted as the estimate counts it (the
// Kubernetes libraries' functions by the size of their arguments), and the context's deadline.
var programOptions = []cel.ProgramOption{
	cel.CostLimit(CostLimit),
	cel.CostTracking(costTracker),
	cel.InterruptCheckFrequency(interruptEvery),
}

// Options configure the CEL environment of a process.
type Options struct {
	// Observer, when set, is told of every evaluation of a rule or guard: its kind ("rule" or
	// "guard"), its cost and its error (the controller's metrics).
	Observer func(kind string, cost uint64, err error)
	// CacheSize bounds the compiled programs kept, and the environments typed from a workflow's
	// parameter declarations, the least recently used forgotten first; 0 means DefaultCacheSize.
	CacheSize int
}

// Env is the one CEL environment of a process, built once at start-up and handed to everything
// that compiles or evaluates CEL. Programs are compiled once per expression text and kept in a
// cache of at most Options.CacheSize programs.
type Env struct {
	base     *cel.Env // every variable but params
	env      *cel.Env // base, with params a map of dyn (rules, and guards whose workflow is unknown)
	observer func(kind string, cost uint64, err error)

	programs *lru.Cache[string, *Program] // by expression (rules), or signature and expression (guards)
	typed    *lru.Cache[string, *cel.Env] // base, with params typed from a workflow's declarations, by signature
}

// NewEnv builds the environment: the variables above and the Kubernetes CEL libraries that help
// in runbooks (lists, strings, regex, URLs, quantities).
func NewEnv(opts Options) (*Env, error) {
	mapOfDyn := cel.MapType(cel.StringType, cel.DynType)
	base, err := cel.NewEnv(
		cel.Variable(VarPlan, mapOfDyn),
		cel.Variable(VarExecution, mapOfDyn),
		cel.Variable(VarStage, mapOfDyn),
		cel.Variable(VarStages, cel.MapType(cel.StringType, mapOfDyn)),
		cel.Variable(VarWorkflow, mapOfDyn),
		cel.Variable(VarActions, cel.MapType(cel.StringType, mapOfDyn)),
		cel.Variable(VarOperation, cel.StringType),
		cel.Variable(VarNow, cel.TimestampType),
		cel.Variable(VarLockHolder, mapOfDyn),
		cel.Variable(VarResponse, mapOfDyn),
		cel.Variable(VarObject, mapOfDyn),
		cel.Variable(VarTarget, mapOfDyn),
		ext.Strings(ext.StringsVersion(2)),
		boundedReplace(), // after ext.Strings: its bindings replace the extension's
		library.Lists(),
		library.Regex(),
		library.URLs(),
		library.Quantity(),
		cel.HomogeneousAggregateLiterals(),
		cel.DefaultUTCTimeZone(true),
	)
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	env, err := base.Extend(cel.Variable(VarParams, mapOfDyn))
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	size := opts.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	return &Env{base: base, env: env, observer: opts.Observer, programs: lru.New[string, *Program](size),
		typed: lru.New[string, *cel.Env](size)}, nil
}

// Program is a compiled, type-checked boolean expression.
type Program struct {
	Expression string
	prg        cel.Program
	kind       string // "rule" or "guard", for the evaluation observer
	// observer is the environment's Options.Observer (nil: none).
	observer func(kind string, cost uint64, err error)
}

// observe tells the observer, if any, of one evaluation.
func (p *Program) observe(details *cel.EvalDetails, err error) {
	if p.observer == nil {
		return
	}
	var cost uint64
	if details != nil && details.ActualCost() != nil {
		cost = *details.ActualCost()
	}
	p.observer(p.kind, cost, err)
}

// Compile type-checks expression (it must be a bool) and returns its program, compiled once per
// text. The error carries cel-go's message with the position in the expression.
func (e *Env) Compile(expression string) (*Program, error) {
	return e.cached(expression, "rule", e.env, expression, nil, func(ast *cel.Ast) error {
		if !ast.OutputType().IsExactType(types.BoolType) {
			return fmt.Errorf("must evaluate to bool, but evaluates to %s", ast.OutputType())
		}
		return nil
	})
}

// CompileGuard compiles a user's guard or condition. With declared not nil (the workflow's
// parameter declarations, possibly none), params is typed from them: reading an undeclared
// parameter is refused with the nearest declared name, and a parameter used as the wrong type
// (params.replicas > "3" for an int) is a type error, both when the workflow or plan is applied,
// not at 3 a.m. With declared nil (a stage guard, whose workflows may declare different
// parameters) params is a map of dyn. Parameters are read as params.name, never params['name'].
// A guard that reads dyn values may evaluate to dyn; it must then be a bool when evaluated.
func (e *Env) CompileGuard(expression string, declared []drv1.Parameter) (*Program, error) {
	env, signature := e.env, "untyped"
	if declared != nil {
		var err error
		if env, signature, err = e.paramsEnv(declared); err != nil {
			return nil, err
		}
	}
	key := "guard\x00" + signature + "\x00" + expression
	return e.cached(key, "guard", env, expression, func(parsed *cel.Ast) error {
		names, indexed := paramsRead(parsed)
		if len(indexed) > 0 {
			return fmt.Errorf("write params.%s, not params['%s']: parameters are read as fields", indexed[0], indexed[0])
		}
		if declared == nil {
			return nil
		}
		known := make([]string, len(declared))
		for i, p := range declared {
			known[i] = p.Name
		}
		for _, name := range names {
			if !slices.Contains(known, name) {
				return fmt.Errorf("params.%s is not a parameter of the workflow%s", name, DidYouMean(name, known))
			}
		}
		return nil
	}, func(checked *cel.Ast) error {
		if t := checked.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
			return fmt.Errorf("must evaluate to bool, but evaluates to %s", t)
		}
		return nil
	})
}

// paramsEnv is the environment whose params is an object with one field a declared parameter,
// of its declared type; built once per signature and cached as the programs are.
func (e *Env) paramsEnv(declared []drv1.Parameter) (*cel.Env, string, error) {
	var sig strings.Builder
	for _, p := range declared {
		fmt.Fprintf(&sig, "%s:%s,", p.Name, p.Type)
	}
	signature := sig.String()
	if env, ok := e.typed.Get(signature); ok {
		return env, signature, nil
	}
	fields := make(map[string]*apiservercel.DeclField, len(declared))
	for _, p := range declared {
		t := apiservercel.StringType
		switch p.Type {
		case drv1.ParameterTypeInt:
			t = apiservercel.IntType
		case drv1.ParameterTypeBool:
			t = apiservercel.BoolType
		}
		fields[p.Name] = apiservercel.NewDeclField(p.Name, t, p.Required, nil, nil)
	}
	object := apiservercel.NewObjectType("drplan.Parameters", fields)
	var env *cel.Env
	opts, err := apiservercel.NewDeclTypeProvider(object).EnvOptions(e.base.CELTypeProvider())
	if err == nil {
		env, err = e.base.Extend(append(opts, cel.Variable(VarParams, object.CelType()))...)
	}
	if err != nil {
		return nil, "", fmt.Errorf("typing the parameters %s: %w", strings.TrimSuffix(signature, ","), err)
	}
	return e.typed.Add(signature, env), signature, nil
}

// cached returns the program cached under key, or compiles expression in env, checks it (parsed,
// then type-checked) and caches it. An expression that does not compile is not cached: it is
// refused again, with the same error, each time it is asked for.
func (e *Env) cached(key, kind string, env *cel.Env, expression string, checkParsed, checkTyped func(*cel.Ast) error) (*Program, error) {
	if p, ok := e.programs.Get(key); ok {
		return p, nil
	}
	parsed, issues := env.Parse(expression)
	if issues != nil && issues.Err() != nil {
		return nil, fmt.Errorf("%s", issues.Err().Error())
	}
	if checkParsed != nil {
		if err := checkParsed(parsed); err != nil {
			return nil, err
		}
	}
	ast, issues := env.Check(parsed)
	if issues != nil && issues.Err() != nil {
		return nil, fmt.Errorf("%s", issues.Err().Error())
	}
	if err := checkTyped(ast); err != nil {
		return nil, err
	}
	if err := checkCost(ast.NativeRep(), expression); err != nil {
		return nil, err
	}
	prg, err := env.Program(ast, programOptions...)
	if err != nil {
		return nil, fmt.Errorf("building the program: %w", err)
	}
	return e.programs.Add(key, &Program{Expression: expression, prg: prg, kind: kind, observer: e.observer}), nil
}

// paramsRead lists the parameter names an expression reads as params.x, and those it reads as
// params['x'].
func paramsRead(parsed *cel.Ast) (names, indexed []string) {
	isParams := func(e celast.Expr) bool {
		return e.Kind() == celast.IdentKind && e.AsIdent() == VarParams
	}
	celast.PreOrderVisit(parsed.NativeRep().Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.SelectKind:
			if s := e.AsSelect(); isParams(s.Operand()) {
				names = append(names, s.FieldName())
			}
		case celast.CallKind:
			c := e.AsCall()
			if c.FunctionName() == "_[_]" && len(c.Args()) == 2 && isParams(c.Args()[0]) && c.Args()[1].Kind() == celast.LiteralKind {
				if name, ok := c.Args()[1].AsLiteral().Value().(string); ok {
					indexed = append(indexed, name)
				}
			}
		}
	}))
	return names, indexed
}

// Eval evaluates the program against vars, within the cost limit and ctx's deadline (EvalTimeout
// when ctx has none; callers evaluating many rules at once share one deadline).
func (p *Program) Eval(ctx context.Context, vars map[string]any) (bool, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, EvalTimeout)
		defer cancel()
	}
	out, details, err := p.prg.ContextEval(ctx, vars)
	p.observe(details, err)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("evaluated to %v, not a bool", out.Value())
	}
	return b, nil
}

// MaxBuiltString bounds the string one call to replace may build. Replacing every character of
// a string with another string multiplies its size, in one native call that no cost limit or
// timeout interrupts: it is refused before it allocates.
const MaxBuiltString = 1 << 20

// boundedReplace binds replace (both overloads of the strings extension) to an implementation
// that computes the result's size first and refuses one over MaxBuiltString.
func boundedReplace() cel.EnvOption {
	strs := []*cel.Type{cel.StringType, cel.StringType, cel.StringType}
	return cel.Function("replace",
		cel.MemberOverload("string_replace_string_string", strs, cel.StringType,
			cel.FunctionBinding(func(args ...ref.Val) ref.Val {
				return replaceBounded(args[0], args[1], args[2], -1)
			})),
		cel.MemberOverload("string_replace_string_string_int", append(strs, cel.IntType), cel.StringType,
			cel.FunctionBinding(func(args ...ref.Val) ref.Val {
				n, ok := args[3].(types.Int)
				if !ok {
					return types.MaybeNoSuchOverloadErr(args[3])
				}
				return replaceBounded(args[0], args[1], args[2], int(n))
			})))
}

func replaceBounded(str, old, repl ref.Val, n int) ref.Val {
	s, ok1 := str.(types.String)
	o, ok2 := old.(types.String)
	r, ok3 := repl.(types.String)
	if !ok1 || !ok2 || !ok3 {
		return types.NewErr("replace: want strings")
	}
	count := strings.Count(string(s), string(o)) // for "", one more than the runes
	if n >= 0 {
		count = min(count, n)
	}
	if size := len(s) + count*(len(r)-len(o)); size > MaxBuiltString {
		return types.NewErr("replace would build a string of %d bytes, over the %d an expression may build", size, MaxBuiltString)
	}
	return types.String(strings.Replace(string(s), string(o), string(r), n))
}
