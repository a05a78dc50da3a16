package rules

import (
	"context"
	"fmt"
	"os"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"sigs.k8s.io/yaml"
)

// RuleSpec is a decision written in CEL: a condition and a message that explains it.
type RuleSpec struct {
	// Name of the rule: StageReady, StageBlocked, PlanLock or RevertEligible.
	Name string `json:"name"`
	// Expression must evaluate to bool.
	Expression string `json:"expression"`
	// Message must evaluate to a string; it says why, when the condition decides.
	Message string `json:"message"`
}

// The built-in rules, as shipped. Operators may replace them by name at start-up.
var builtinRules = []RuleSpec{{
	// A stage may start once every stage it depends on has succeeded, or was skipped by its own
	// when guard (a guard is a decision, not a failure).
	Name:       "StageReady",
	Expression: `stage.dependsOn.all(d, stages[d].phase == 'Succeeded' || (stages[d].phase == 'Skipped' && stages[d].guarded))`,
	Message:    `'waiting for ' + stage.dependsOn.filter(d, !(stages[d].phase == 'Succeeded' || (stages[d].phase == 'Skipped' && stages[d].guarded))).join(', ')`,
}, {
	// A stage that depends on one that failed, was cancelled, or was skipped for a failure cannot
	// run: it is skipped (under failurePolicy Continue; under Stop nothing new starts).
	Name:       "StageBlocked",
	Expression: `stage.dependsOn.exists(d, stages[d].phase in ['Failed', 'Cancelled'] || (stages[d].phase == 'Skipped' && !stages[d].guarded))`,
	Message:    `'Skipped: stage "' + stage.dependsOn.filter(d, stages[d].phase in ['Failed', 'Cancelled'] || (stages[d].phase == 'Skipped' && !stages[d].guarded))[0] + '" it depends on did not succeed'`,
}, {
	// An execution may take the plan when nobody holds it, it holds it already, or the holder
	// is gone or finished (a stale lock).
	Name: "PlanLock",
	Expression: `!has(plan.currentExecution) ||
  (plan.currentExecution.name == execution.name && plan.currentExecution.namespace == execution.namespace) ||
  !lockHolder.exists || lockHolder.finished`,
	Message: `'Waiting for execution ' + plan.currentExecution.name + ' to finish: a plan runs one execution at a time'`,
}, {
	// A Revert may run when its target is an Execute of this plan that ended having taken effect
	// (Succeeded, or Failed/Cancelled after an action succeeded: a partial failover, of which
	// only what took effect is undone), that has a snapshot to revert from, and that no other
	// Revert has reverted. The lock is PlanLock's: a Revert waits for a running execution.
	Name: "RevertEligible",
	Expression: `target.exists && target.operation == 'Execute' &&
  target.planName == plan.name && target.planNamespace == plan.namespace &&
  (target.phase == 'Succeeded' || (target.phase in ['Failed', 'Cancelled'] && target.tookEffect)) &&
  target.hasSnapshot &&
  (!target.reverted || target.revertedBy == execution.name)`,
	Message: `target.name == '' ? 'nothing to revert: no Execute of plan ' + plan.name + ' has taken effect without being reverted since' :
  !target.exists ? 'execution ' + target.name + ' does not exist' :
  target.operation != 'Execute' ? 'execution ' + target.name + ' is a ' + target.operation + ': only an Execute can be reverted' :
  (target.planName != plan.name || target.planNamespace != plan.namespace) ? 'execution ' + target.name + ' ran plan ' + target.planNamespace + '/' + target.planName + ', not ' + plan.namespace + '/' + plan.name :
  target.phase in ['Pending', 'Running'] ? 'execution ' + target.name + ' is still ' + target.phase + ': cancel it or wait for it to end' :
  !(target.phase == 'Succeeded' || target.tookEffect) ? 'execution ' + target.name + ' ended ' + target.phase + ' before any action took effect: nothing to revert' :
  !target.hasSnapshot ? 'execution ' + target.name + ' has no snapshot of what it ran, so it cannot be reverted' :
  'execution ' + target.name + ' was already reverted by ' + target.revertedBy`,
}}

// BuiltinRules returns the built-in rules, to print them in the docs or to override one.
func BuiltinRules() []RuleSpec { return append([]RuleSpec(nil), builtinRules...) }

// Rule is a compiled RuleSpec.
type Rule struct {
	Name    string
	cond    *Program
	message cel.Program
}

// Decide evaluates the rule: its verdict, and its message when the verdict is the one the
// message explains (false for StageReady, PlanLock and RevertEligible, true for StageBlocked).
func (r *Rule) Decide(ctx context.Context, vars map[string]any, explainWhen bool) (bool, string, error) {
	ok, err := r.cond.Eval(ctx, vars)
	if err != nil {
		return false, "", fmt.Errorf("rule %s: %w", r.Name, err)
	}
	if ok != explainWhen {
		return ok, "", nil
	}
	out, _, err := r.message.ContextEval(ctx, vars)
	if err != nil {
		return ok, "", fmt.Errorf("rule %s: message: %w", r.Name, err)
	}
	msg, _ := out.Value().(string)
	return ok, msg, nil
}

// Rules are the decisions the engine takes through CEL.
type Rules struct {
	StageReady   *Rule
	StageBlocked *Rule
	PlanLock     *Rule
	// RevertEligible decides whether a Revert may undo its target.
	RevertEligible *Rule
	// Env compiles the users' guards, in the same environment and cache as the rules.
	Env *Env
}

// NewRules compiles the built-in rules, each replaced by the override of the same name if one
// is given. A rule that does not compile is an error naming it: the controller must not start.
func NewRules(env *Env, overrides ...RuleSpec) (*Rules, error) {
	specs := map[string]RuleSpec{}
	for _, s := range builtinRules {
		specs[s.Name] = s
	}
	for _, o := range overrides {
		if _, known := specs[o.Name]; !known {
			return nil, fmt.Errorf("rule %q: unknown rule (the rules are StageReady, StageBlocked, PlanLock and RevertEligible)", o.Name)
		}
		specs[o.Name] = o
	}
	compiled := map[string]*Rule{}
	for name, s := range specs {
		cond, err := env.Compile(s.Expression)
		if err != nil {
			return nil, fmt.Errorf("rule %s: expression: %w", name, err)
		}
		msg, err := env.compileString(s.Message)
		if err != nil {
			return nil, fmt.Errorf("rule %s: message: %w", name, err)
		}
		compiled[name] = &Rule{Name: name, cond: cond, message: msg}
	}
	return &Rules{StageReady: compiled["StageReady"], StageBlocked: compiled["StageBlocked"], PlanLock: compiled["PlanLock"],
		RevertEligible: compiled["RevertEligible"], Env: env}, nil
}

// compileString compiles an expression that must evaluate to a string (a message).
func (e *Env) compileString(expression string) (cel.Program, error) {
	ast, issues := e.env.Compile(expression)
	if issues != nil && issues.Err() != nil {
		return nil, fmt.Errorf("%s", issues.Err().Error())
	}
	if !ast.OutputType().IsExactType(types.StringType) {
		return nil, fmt.Errorf("must evaluate to string, but evaluates to %s", ast.OutputType())
	}
	if err := checkCost(ast.NativeRep(), expression); err != nil {
		return nil, err
	}
	return e.env.Program(ast, programOptions...)
}

// New builds a process's CEL environment with opts and compiles the rules in it: the built-in
// ones, each replaced by the override of the same name. The process does this once, at start-up,
// and hands the result to everything that decides or compiles CEL.
func New(opts Options, overrides ...RuleSpec) (*Rules, error) {
	env, err := NewEnv(opts)
	if err != nil {
		return nil, err
	}
	return NewRules(env, overrides...)
}

// LoadRules reads rule overrides (a YAML or JSON list of {name, expression, message}) and builds
// the rules with them, as New does. Every error names the file and the rule.
func LoadRules(path string, opts Options) (*Rules, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rules file: %w", err)
	}
	var specs []RuleSpec
	if err := yaml.UnmarshalStrict(raw, &specs); err != nil {
		return nil, fmt.Errorf("rules file %s: %w", path, err)
	}
	r, err := New(opts, specs...)
	if err != nil {
		return nil, fmt.Errorf("rules file %s: %w", path, err)
	}
	return r, nil
}
