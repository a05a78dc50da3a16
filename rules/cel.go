package rules

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"k8s.io/apiserver/pkg/cel/library"
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
)

// Env is the one CEL environment of the controller, built once. Programs are compiled once per
// expression text and cached.
type Env struct {
	env *cel.Env

	mu       sync.RWMutex
	programs map[string]*Program
}

// NewEnv builds the environment: the variables above and the Kubernetes CEL libraries that help
// in runbooks (lists, strings, regex, URLs, quantities).
func NewEnv() (*Env, error) {
	mapOfDyn := cel.MapType(cel.StringType, cel.DynType)
	env, err := cel.NewEnv(
		cel.Variable(VarParams, mapOfDyn),
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
		ext.Strings(ext.StringsVersion(2)),
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
	return &Env{env: env, programs: map[string]*Program{}}, nil
}

// Program is a compiled, type-checked boolean expression.
type Program struct {
	Expression string
	prg        cel.Program
}

// Compile type-checks expression (it must be a bool) and returns its program, compiled once per
// text. The error carries cel-go's message with the position in the expression.
func (e *Env) Compile(expression string) (*Program, error) {
	return e.cached(expression, expression, func(ast *cel.Ast) error {
		if !ast.OutputType().IsExactType(types.BoolType) {
			return fmt.Errorf("must evaluate to bool, but evaluates to %s", ast.OutputType())
		}
		return nil
	})
}

// CompileGuard compiles a user's guard or condition. Every params.<name> (or params['name']) it
// reads must be one of declared, when declared is not nil, so a typo is refused when the workflow
// or plan is applied, not at 3 a.m. A guard over params may evaluate to dyn; it must then be a
// bool when evaluated.
func (e *Env) CompileGuard(expression string, declared []string) (*Program, error) {
	key := "guard\x00" + strings.Join(declared, ",") + "\x00" + expression
	return e.cached(key, expression, func(ast *cel.Ast) error {
		if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
			return fmt.Errorf("must evaluate to bool, but evaluates to %s", t)
		}
		if declared == nil {
			return nil
		}
		for _, name := range paramsRead(ast) {
			if !slices.Contains(declared, name) {
				return fmt.Errorf("params.%s is not a parameter of the workflow%s", name, DidYouMean(name, declared))
			}
		}
		return nil
	})
}

// cached returns the program cached under key, or compiles expression, checks it and caches it.
func (e *Env) cached(key, expression string, check func(*cel.Ast) error) (*Program, error) {
	e.mu.RLock()
	p, ok := e.programs[key]
	e.mu.RUnlock()
	if ok {
		return p, nil
	}
	ast, issues := e.env.Compile(expression)
	if issues != nil && issues.Err() != nil {
		return nil, fmt.Errorf("%s", issues.Err().Error())
	}
	if err := check(ast); err != nil {
		return nil, err
	}
	prg, err := e.env.Program(ast,
		cel.CostLimit(CostLimit),
		cel.InterruptCheckFrequency(interruptEvery),
	)
	if err != nil {
		return nil, fmt.Errorf("building the program: %w", err)
	}
	p = &Program{Expression: expression, prg: prg}
	e.mu.Lock()
	e.programs[key] = p
	e.mu.Unlock()
	return p, nil
}

// paramsRead lists the parameter names an expression reads as params.x or params['x'].
func paramsRead(checked *cel.Ast) []string {
	var names []string
	isParams := func(e celast.Expr) bool {
		return e.Kind() == celast.IdentKind && e.AsIdent() == VarParams
	}
	celast.PreOrderVisit(checked.NativeRep().Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.SelectKind:
			if s := e.AsSelect(); isParams(s.Operand()) {
				names = append(names, s.FieldName())
			}
		case celast.CallKind:
			c := e.AsCall()
			if c.FunctionName() == "_[_]" && len(c.Args()) == 2 && isParams(c.Args()[0]) && c.Args()[1].Kind() == celast.LiteralKind {
				if name, ok := c.Args()[1].AsLiteral().Value().(string); ok {
					names = append(names, name)
				}
			}
		}
	}))
	return names
}

// Eval evaluates the program against vars, within the cost limit and ctx's deadline (EvalTimeout
// when ctx has none; callers evaluating many rules at once share one deadline).
func (p *Program) Eval(ctx context.Context, vars map[string]any) (bool, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, EvalTimeout)
		defer cancel()
	}
	out, _, err := p.prg.ContextEval(ctx, vars)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("evaluated to %v, not a bool", out.Value())
	}
	return b, nil
}
