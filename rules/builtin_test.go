package rules_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

func stagesVars(deps []string, phases map[string]string) map[string]any {
	stages := map[string]any{}
	for name, ph := range phases {
		stages[name] = map[string]any{"phase": ph, "guarded": false}
	}
	return map[string]any{"stage": map[string]any{"name": "s", "dependsOn": deps}, "stages": stages}
}

func TestBuiltinStageRules(t *testing.T) {
	r := newRules(t)
	tests := []struct {
		name       string
		deps       []string
		phases     map[string]string
		ready      bool
		readyMsg   string
		blocked    bool
		blockedMsg string
	}{
		{name: "no dependencies", ready: true},
		{name: "all succeeded", deps: []string{"a", "b"}, phases: map[string]string{"a": "Succeeded", "b": "Succeeded"}, ready: true},
		{name: "one running", deps: []string{"a", "b"}, phases: map[string]string{"a": "Succeeded", "b": "Running"},
			readyMsg: "waiting for b"},
		{name: "one failed", deps: []string{"a", "b"}, phases: map[string]string{"a": "Failed", "b": "Running"},
			readyMsg: "waiting for a, b", blocked: true, blockedMsg: `Skipped: stage "a" it depends on did not succeed`},
		{name: "one skipped", deps: []string{"a"}, phases: map[string]string{"a": "Skipped"},
			readyMsg: "waiting for a", blocked: true, blockedMsg: `Skipped: stage "a" it depends on did not succeed`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vars := stagesVars(tc.deps, tc.phases)
			if tc.deps == nil {
				vars["stage"] = map[string]any{"name": "s", "dependsOn": []string{}}
			}
			ready, msg, err := r.StageReady.Decide(context.Background(), vars, false)
			require.NoError(t, err)
			assert.Equal(t, tc.ready, ready)
			assert.Equal(t, tc.readyMsg, msg)
			blocked, msg, err := r.StageBlocked.Decide(context.Background(), vars, true)
			require.NoError(t, err)
			assert.Equal(t, tc.blocked, blocked)
			assert.Equal(t, tc.blockedMsg, msg)
		})
	}
}

func TestBuiltinPlanLock(t *testing.T) {
	r := newRules(t)
	me := map[string]any{"name": "run-2", "namespace": "prod"}
	held := func(name string) map[string]any {
		return map[string]any{"currentExecution": map[string]any{"name": name, "namespace": "prod"}}
	}
	tests := []struct {
		name   string
		plan   map[string]any
		holder map[string]any
		ok     bool
		msg    string
	}{
		{name: "free", plan: map[string]any{}, holder: map[string]any{"exists": false, "finished": false}, ok: true},
		{name: "ours already", plan: held("run-2"), holder: map[string]any{"exists": true, "finished": false}, ok: true},
		{name: "held by a running execution", plan: held("run-1"), holder: map[string]any{"exists": true, "finished": false},
			msg: "Waiting for execution run-1 to finish: a plan runs one execution at a time"},
		{name: "stale: holder finished", plan: held("run-1"), holder: map[string]any{"exists": true, "finished": true}, ok: true},
		{name: "stale: holder deleted", plan: held("run-1"), holder: map[string]any{"exists": false, "finished": false}, ok: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, msg, err := r.PlanLock.Decide(context.Background(),
				map[string]any{"plan": tc.plan, "execution": me, "lockHolder": tc.holder}, false)
			require.NoError(t, err)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.msg, msg)
		})
	}
}

func TestBuiltinRevertEligible(t *testing.T) {
	r := newRules(t)
	plan := map[string]any{"name": "failover", "namespace": "prod"}
	me := map[string]any{"name": "revert-1", "namespace": "prod", "operation": "Revert"}
	target := func(change func(map[string]any)) map[string]any {
		t := map[string]any{"name": "run-1", "namespace": "prod", "exists": true, "operation": "Execute", "phase": "Succeeded",
			"planName": "failover", "planNamespace": "prod", "tookEffect": true, "hasSnapshot": true, "reverted": false, "revertedBy": ""}
		if change != nil {
			change(t)
		}
		return t
	}
	tests := []struct {
		name   string
		target map[string]any
		ok     bool
		msg    string
	}{
		{name: "a succeeded Execute", target: target(nil), ok: true},
		{name: "a partial failover", target: target(func(t map[string]any) { t["phase"] = "Failed" }), ok: true},
		{name: "a cancelled one that took effect", target: target(func(t map[string]any) { t["phase"] = "Cancelled" }), ok: true},
		{name: "reverted by this very revert (a restart)", target: target(func(t map[string]any) { t["reverted"], t["revertedBy"] = true, "revert-1" }), ok: true},
		{name: "gone", target: target(func(t map[string]any) { t["exists"] = false }), msg: "execution run-1 does not exist"},
		{name: "nothing to revert", target: target(func(t map[string]any) { t["exists"], t["name"] = false, "" }),
			msg: "nothing to revert: no Execute of plan failover has taken effect without being reverted since"},
		{name: "a Revert", target: target(func(t map[string]any) { t["operation"] = "Revert" }), msg: "execution run-1 is a Revert: only an Execute can be reverted"},
		{name: "another plan's", target: target(func(t map[string]any) { t["planName"] = "other" }), msg: "execution run-1 ran plan prod/other, not prod/failover"},
		{name: "still running", target: target(func(t map[string]any) { t["phase"] = "Running" }), msg: "execution run-1 is still Running: cancel it or wait for it to end"},
		{name: "failed before any effect", target: target(func(t map[string]any) { t["phase"], t["tookEffect"] = "Failed", false }),
			msg: "execution run-1 ended Failed before any action took effect: nothing to revert"},
		{name: "no snapshot", target: target(func(t map[string]any) { t["hasSnapshot"] = false }), msg: "execution run-1 has no snapshot of what it ran, so it cannot be reverted"},
		{name: "already reverted", target: target(func(t map[string]any) { t["reverted"], t["revertedBy"] = true, "revert-0" }), msg: "execution run-1 was already reverted by revert-0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, msg, err := r.RevertEligible.Decide(context.Background(),
				map[string]any{"plan": plan, "execution": me, "target": tc.target}, false)
			require.NoError(t, err)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.msg, msg)
		})
	}
}

func TestRuleOverridesAndErrors(t *testing.T) {
	env, err := rules.NewEnv(rules.Options{})
	require.NoError(t, err)
	tests := []struct {
		name string
		spec rules.RuleSpec
		err  string
	}{
		{name: "a stricter lock is accepted", spec: rules.RuleSpec{Name: "PlanLock",
			Expression: `!has(plan.currentExecution) || !lockHolder.exists || lockHolder.finished`, Message: `'locked'`}},
		{name: "unknown rule", spec: rules.RuleSpec{Name: "StageRedy", Expression: "true", Message: "''"},
			err: `rule "StageRedy": unknown rule`},
		{name: "syntax error with position", spec: rules.RuleSpec{Name: "StageReady", Expression: "stage.dependsOn.all(d, ", Message: "''"},
			err: "rule StageReady: expression: ERROR: <input>:1:24: Syntax error"},
		{name: "not a bool", spec: rules.RuleSpec{Name: "StageReady", Expression: "stage.name", Message: "''"},
			err: "rule StageReady: expression: must evaluate to bool, but evaluates to dyn"},
		{name: "message not a string", spec: rules.RuleSpec{Name: "StageReady", Expression: "true", Message: "1"},
			err: "rule StageReady: message: must evaluate to string, but evaluates to int"},
		{name: "undeclared variable", spec: rules.RuleSpec{Name: "PlanLock", Expression: "plann.x == 1", Message: "''"},
			err: "undeclared reference to 'plann'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rules.NewRules(env, tc.spec)
			if tc.err == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
}

func TestRuleCostLimit(t *testing.T) {
	env, err := rules.NewEnv(rules.Options{})
	require.NoError(t, err)
	// Matching long strings costs in proportion to their length: a few large values exceed the
	// per-call cost limit at once.
	p, err := env.Compile(`stage.dependsOn.exists(a, a.matches('^x+y$'))`)
	require.NoError(t, err)
	long := strings.Repeat("x", 100_000)
	deps := make([]string, 400)
	for i := range deps {
		deps[i] = long
	}
	_, err = p.Eval(context.Background(), map[string]any{"stage": map[string]any{"dependsOn": deps}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cost limit")

	// A walk the estimate admits (dependsOn has at most 100 items) is still stopped at run time
	// when its input is bigger than the schema allows.
	p, err = env.Compile(`stage.dependsOn.all(a, stage.dependsOn.all(b, a != 'z'))`)
	require.NoError(t, err)
	_, err = p.Eval(context.Background(), map[string]any{"stage": map[string]any{"dependsOn": make([]string, 2000)}})
	require.Error(t, err)

	// A longer walk is refused before it runs.
	_, err = env.Compile(`stage.dependsOn.all(a, stage.dependsOn.all(b, stage.dependsOn.all(c, a != 'z')))`)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "estimated cost 5060603 exceeds the limit 1000000, at 1:1")
}

// TestReplaceIsBounded: replace multiplies a string's size in one native call, which no cost
// limit interrupts; a result over MaxBuiltString is refused before it is built, whatever the
// estimate assumed of the input (a Secret's value, a large ConfigMap a waitFor reads).
func TestReplaceIsBounded(t *testing.T) {
	env, err := rules.NewEnv(rules.Options{})
	require.NoError(t, err)
	p, err := env.Compile(`object.data.x.replace('a', 'bbbbbbbbbbbbbbbbbbbb') == object.data.y`)
	require.NoError(t, err, "a literal replacement is estimated within the limit")
	eval := func(x, y string) (bool, error) {
		return p.Eval(context.Background(), map[string]any{"object": map[string]any{"data": map[string]any{"x": x, "y": y}}})
	}
	ok, err := eval("banana", "b"+strings.Repeat("b", 20)+"n"+strings.Repeat("b", 20)+"n"+strings.Repeat("b", 20))
	require.NoError(t, err)
	assert.True(t, ok, "replace works as the strings extension's")
	big := strings.Repeat("a", 1<<20) // 1 MiB of "a" would make 20 MiB
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = eval(big, "")
	runtime.ReadMemStats(&after)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "replace would build a string of 20971520 bytes, over the 1048576 an expression may build")
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(8<<20), "refused before it builds 20 MiB")

	p, err = env.Compile(`object.data.x.replace('', '-', 3) == object.data.y`)
	require.NoError(t, err)
	ok, err = eval("abcdef", "-a-b-cdef")
	require.NoError(t, err)
	assert.True(t, ok, "the overload with a limit replaces at most that many")
}

func BenchmarkStageReadyCached(b *testing.B) {
	r := newRules(b)
	vars := stagesVars([]string{"infrastructure", "applications"}, map[string]string{"infrastructure": "Succeeded", "applications": "Succeeded"})
	ctx, cancel := context.WithTimeout(context.Background(), rules.EvalTimeout)
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer() // building the rules is not what is measured
	for i := 0; i < b.N; i++ {
		if _, _, err := r.StageReady.Decide(ctx, vars, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompileCold(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		env, err := rules.NewEnv(rules.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := env.Compile(`stage.dependsOn.all(d, stages[d].phase == 'Succeeded')`); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDocsPrintTheBuiltinRulesVerbatim keeps docs/rules.md true to the code.
func TestDocsPrintTheBuiltinRulesVerbatim(t *testing.T) {
	doc, err := os.ReadFile("../docs/rules.md")
	require.NoError(t, err)
	for _, r := range rules.BuiltinRules() {
		for what, text := range map[string]string{"heading": "### " + r.Name, "expression": r.Expression, "message": r.Message} {
			assert.True(t, strings.Contains(string(doc), text), "docs/rules.md lacks the %s of %s verbatim:\n%s", what, r.Name, text)
		}
	}
}

func TestLoadRules(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := dir + "/" + name
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
		return path
	}
	tests := []struct {
		name, content, err string
	}{
		{name: "stricter lock", content: "- name: PlanLock\n  expression: \"!has(plan.currentExecution)\"\n  message: \"'the plan is busy'\"\n"},
		{name: "unknown field", content: "- name: PlanLock\n  expresion: \"true\"\n", err: `unknown field "expresion"`},
		{name: "does not compile", content: "- name: StageReady\n  expression: \"stage.dependsOn.all(\"\n  message: \"''\"\n",
			err: "rule StageReady: expression: ERROR: <input>:1:21: Syntax error"},
		{name: "too costly", content: "- name: StageReady\n  expression: \"stages.all(a, stages.all(b, stages.all(c, a != c)))\"\n  message: \"''\"\n",
			err: "rule StageReady: expression: estimated cost 12050502 exceeds the limit 1000000, at 1:1"},
		{name: "too costly message", content: "- name: StageReady\n  expression: \"true\"\n  message: \"stages.map(a, stages[a].message.replace('', stages[a].message)).join(', ')\"\n",
			err: "rule StageReady: message: estimated cost"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := write(strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.content)
			r, err := rules.LoadRules(path, rules.Options{})
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "rules file "+path)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			ok, msg, err := r.PlanLock.Decide(context.Background(), map[string]any{
				"plan":      map[string]any{"currentExecution": map[string]any{"name": "a", "namespace": "n"}},
				"execution": map[string]any{"name": "b", "namespace": "n"}, "lockHolder": map[string]any{"exists": false, "finished": false}}, false)
			require.NoError(t, err)
			assert.False(t, ok, "the replaced rule decides: a stale lock no longer counts as free")
			assert.Equal(t, "the plan is busy", msg)
		})
	}
}

func TestCompileGuard(t *testing.T) {
	env, err := rules.NewEnv(rules.Options{})
	require.NoError(t, err)
	declared := []drv1.Parameter{
		{Name: "replicas", Type: drv1.ParameterTypeInt},
		{Name: "enabled", Type: drv1.ParameterTypeBool},
		{Name: "region"}, // string by default
		{Name: "pattern"},
	}
	tests := []struct {
		expr     string
		declared []drv1.Parameter
		err      string
	}{
		{expr: "params.replicas >= 3 && params.region == 'dr'", declared: declared},
		{expr: "params.enabled", declared: declared}, // typed bool: a guard as it is
		{expr: "has(params.region) && params.region.startsWith('dr-')", declared: declared},
		{expr: "params.replicaz > 1", declared: declared, err: `params.replicaz is not a parameter of the workflow (did you mean "replicas"?)`},
		{expr: "params.replicas > '3'", declared: declared, err: "found no matching overload for '_>_' applied to '(int, string)'"},
		{expr: "params.enabled == 'true'", declared: declared, err: "found no matching overload for '_==_' applied to '(bool, string)'"},
		{expr: "params.region + 1 == 'x'", declared: declared, err: "found no matching overload for '_+_' applied to '(string, int)'"},
		{expr: "params.region", declared: declared, err: "must evaluate to bool, but evaluates to string"},
		{expr: "params['region'] == 'dr'", declared: declared, err: "write params.region, not params['region']"},
		{expr: "params['region'] == 'dr'", declared: nil, err: "write params.region, not params['region']"},
		{expr: "params.anything == 1", declared: nil},                                                                     // a stage guard: not known, dyn
		{expr: "params.anything", declared: nil},                                                                          // dyn: must be a bool when evaluated
		{expr: "response.code == 200 && params.x == 1", declared: []drv1.Parameter{}, err: "params.x is not a parameter"}, // none declared
		{expr: "1 + 1", declared: declared, err: "must evaluate to bool, but evaluates to int"},
		{expr: "params.replicas >=", declared: declared, err: "Syntax error"},
		// Priced at compile time over the sizes docs/rules.md states: the usual guards fit the
		// cost limit, bombs are refused with the estimate and where it lies.
		{expr: "has(object.status.conditions) && object.status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')"},
		{expr: "has(object.metadata.annotations) && 'applied' in object.metadata.annotations"},
		{expr: "response.code == 200 && response.json.items.exists(i, i.state == 'ok')"},
		{expr: `response.body.matches('^\\{.*"ok": *true.*\\}$')`},
		{expr: "response.headers['Content-Type'].startsWith('application/json')"},
		{expr: "actions.all(k, actions[k].phase == 'Succeeded' || actions[k].message.contains('timeout'))"},
		{expr: "stage.dependsOn.all(a, stage.dependsOn.all(b, a == b || stages[a].phase == stages[b].phase))"},
		{expr: "params.region.matches('^dr-[a-z0-9-]+$') && params.replicas > 0", declared: declared},
		{expr: "params.region.matches(params.pattern)", declared: declared},
		{expr: "object.spec.items.all(x, object.spec.items.all(y, x == y))",
			err: `estimated cost 3524020862979 exceeds the limit 1000000, at 1:1`},
		{expr: "operation == 'Execute' && stages.all(a, stages.all(b, stages.all(c, a != c)))",
			err: `exceeds the limit 1000000, most of it in "stages.all(a, stages.all(b, stages.all(c, a != c)))" at 1:27 (estimated cost `},
		{expr: "object.data.all(k, object.data[k].matches('^(a|b)*c$'))",
			err: `exceeds the limit 1000000, at 1:1`},
		{expr: "params.region.replace('', params.region).replace('', params.region).size() > 0", declared: declared,
			err: `most of it in "params.region.replace('', params.region)" at 1:1`},
		{expr: "response.code == 200 && response.body.replace('', response.body).contains('x')",
			err: `most of it in "response.body.replace('', response.body)" at 1:25`},
		// One replace of a value by a value: 4,096 x 4,097 characters built.
		{expr: "params.region.replace('a', params.region).size() > 0", declared: declared,
			err: `most of it in "params.region.replace('a', params.region)" at 1:1 (estimated cost 1678544)`},
		{expr: "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16].map(i, response.body).join('').contains(response.body)",
			err: "exceeds the limit 1000000"},
		{expr: "response.json.a.exists(x, response.json.b.exists(y, x == y))",
			err: "exceeds the limit 1000000, at 1:1"},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			_, err := env.CompileGuard(tc.expr, tc.declared)
			if tc.err == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
}

// guardVars are the variables of an action guard in a typical failover: an earlier probe's HTTP
// output and the workflow's typed parameters.
func guardVars() map[string]any {
	return map[string]any{
		"params": map[string]any{"replicas": int64(3), "enabled": true, "region": "dr-east"},
		"actions": map[string]any{
			"probe": map[string]any{"phase": "Succeeded", "outputs": map[string]any{"httpResponse": map[string]any{"statusCode": int64(200), "body": `{"ok":true}`}}},
		},
		"operation": "Execute",
	}
}

func TestGuardEval(t *testing.T) {
	env, err := rules.NewEnv(rules.Options{})
	require.NoError(t, err)
	declared := []drv1.Parameter{
		{Name: "replicas", Type: drv1.ParameterTypeInt},
		{Name: "enabled", Type: drv1.ParameterTypeBool},
		{Name: "region"},
		{Name: "unset"},
	}
	tests := []struct {
		name, expr string
		want       bool
		err        string
	}{
		{name: "true", expr: "actions.probe.outputs.httpResponse.statusCode == 200 && params.replicas >= 3", want: true},
		{name: "false", expr: "params.replicas > 3", want: false},
		{name: "typed bool", expr: "params.enabled && params.region.startsWith('dr-')", want: true},
		{name: "absent optional parameter", expr: "!has(params.unset)", want: true},
		{name: "error: no value", expr: "params.unset == 'x'", err: "no such key: unset"},
		{name: "error: no such action", expr: "actions.missing.phase == 'Succeeded'", err: "no such key: missing"},
		{name: "wrong type when evaluated", expr: "actions.probe.outputs.httpResponse.body", err: "not a bool"},
		// Matching costs in proportion to the string's length: a 4 MB body matched 3 times
		// exceeds the per-call limit.
		{name: "cost exceeded", expr: "![1, 2, 3].exists(i, actions.probe.outputs.httpResponse.body.matches('^x+y$'))", err: "actual cost limit exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prg, err := env.CompileGuard(tc.expr, declared)
			require.NoError(t, err)
			vars := guardVars()
			if tc.name == "cost exceeded" {
				vars["actions"].(map[string]any)["probe"].(map[string]any)["outputs"].(map[string]any)["httpResponse"].(map[string]any)["body"] = strings.Repeat("x", 4<<20)
			}
			got, err := prg.Eval(context.Background(), vars)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func BenchmarkGuardCached(b *testing.B) {
	env, err := rules.NewEnv(rules.Options{})
	require.NoError(b, err)
	declared := []drv1.Parameter{{Name: "replicas", Type: drv1.ParameterTypeInt}, {Name: "region"}}
	const expr = "actions.probe.outputs.httpResponse.statusCode == 200 && params.replicas >= 3"
	vars := guardVars()
	ctx, cancel := context.WithTimeout(context.Background(), rules.EvalTimeout)
	defer cancel()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		prg, err := env.CompileGuard(expr, declared) // from the cache, as the engine does
		if err != nil {
			b.Fatal(err)
		}
		if _, err := prg.Eval(ctx, vars); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGuardCacheHit is the cache's own share of a cached guard: the lookup alone, from one
// goroutine and from all at once.
func BenchmarkGuardCacheHit(b *testing.B) {
	env, err := rules.NewEnv(rules.Options{})
	require.NoError(b, err)
	declared := []drv1.Parameter{{Name: "replicas", Type: drv1.ParameterTypeInt}, {Name: "region"}}
	const expr = "actions.probe.outputs.httpResponse.statusCode == 200 && params.replicas >= 3"
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if _, err := env.CompileGuard(expr, declared); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := env.CompileGuard(expr, declared); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkGuardCompileCold(b *testing.B) {
	declared := []drv1.Parameter{{Name: "replicas", Type: drv1.ParameterTypeInt}, {Name: "region"}}
	env, err := rules.NewEnv(rules.Options{})
	require.NoError(b, err)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		// A new text each time: nothing comes from the cache but the environment.
		if _, err := env.CompileGuard(fmt.Sprintf("actions.probe.outputs.httpResponse.statusCode == 200 && params.replicas >= %d", i), declared); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDocsGuardExamplesCompile compiles every guard and condition of docs/rules.md.
func TestDocsGuardExamplesCompile(t *testing.T) {
	doc, err := os.ReadFile("../docs/rules.md")
	require.NoError(t, err)
	env, err := rules.NewEnv(rules.Options{})
	require.NoError(t, err)
	found := regexp.MustCompile(`(?m)^\s*-?\s*(when|condition|successCondition): "(.+)"\s*(#.*)?$`).FindAllStringSubmatch(string(doc), -1)
	require.GreaterOrEqual(t, len(found), 6, "the examples were found")
	for _, m := range found {
		t.Run(m[2], func(t *testing.T) {
			_, err := env.CompileGuard(m[2], nil)
			assert.NoError(t, err)
		})
	}
}

// TestObserverIsTheEnvironments: each environment tells its own observer, and only it, of its
// evaluations (no process-wide observer).
func TestObserverIsTheEnvironments(t *testing.T) {
	type seen struct {
		kind string
		cost uint64
		err  bool
	}
	var got []seen
	observed, err := rules.New(rules.Options{Observer: func(kind string, cost uint64, err error) {
		got = append(got, seen{kind, cost, err != nil})
	}})
	require.NoError(t, err)
	other := newRules(t)

	vars := stagesVars([]string{"a"}, map[string]string{"a": "Succeeded"})
	_, _, err = other.StageReady.Decide(context.Background(), vars, false)
	require.NoError(t, err)
	assert.Empty(t, got, "another environment's evaluations are not observed")

	_, _, err = observed.StageReady.Decide(context.Background(), vars, false)
	require.NoError(t, err)
	guard, err := observed.Env.CompileGuard("params.x == 1", nil)
	require.NoError(t, err)
	_, err = guard.Eval(context.Background(), map[string]any{"params": map[string]any{}})
	require.Error(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, "rule", got[0].kind)
	assert.NotZero(t, got[0].cost)
	assert.False(t, got[0].err)
	assert.Equal(t, seen{kind: "guard", err: true}, seen{kind: got[1].kind, err: got[1].err})
}

// TestProgramCacheEvictsLeastRecentlyUsed: an environment keeps at most CacheSize programs. Past
// the bound the least recently used is forgotten (compiled again, as a new program, on its next
// use) and the most recently used are kept (the same program comes back).
func TestProgramCacheEvictsLeastRecentlyUsed(t *testing.T) {
	const bound = 3
	env, err := rules.NewEnv(rules.Options{CacheSize: bound})
	require.NoError(t, err)
	compile := func(i int) *rules.Program {
		p, err := env.CompileGuard(fmt.Sprintf("params.replicas >= %d", i), []drv1.Parameter{{Name: "replicas", Type: drv1.ParameterTypeInt}})
		require.NoError(t, err)
		return p
	}

	first := compile(0)
	assert.Same(t, first, compile(0), "a cached program is compiled once")
	for i := 1; i < bound; i++ {
		compile(i)
	}
	assert.Equal(t, bound, env.CachedPrograms())
	last := compile(bound) // bound+1 distinct expressions: the first one goes
	assert.Equal(t, bound, env.CachedPrograms(), "the cache keeps its bound")
	assert.Same(t, last, compile(bound), "the most recently used is kept")
	ok, err := first.Eval(context.Background(), map[string]any{"params": map[string]any{"replicas": int64(1)}})
	require.NoError(t, err)
	assert.True(t, ok, "an evicted program still evaluates for whoever holds it")
	assert.NotSame(t, first, compile(0), "the first was evicted: its next use compiles it again")

	// Least recently used, not first in: using 1 again makes 2 the next to go.
	env, err = rules.NewEnv(rules.Options{CacheSize: bound})
	require.NoError(t, err)
	p := make([]*rules.Program, bound)
	for i := range p {
		p[i] = compile(i)
	}
	compile(0) // 0 is the most recently used now: 1 is the least
	compile(bound)
	assert.Same(t, p[0], compile(0), "used again, the first is kept")
	assert.Same(t, p[2], compile(2))
	assert.NotSame(t, p[1], compile(1), "the least recently used was evicted")
	assert.Equal(t, bound, env.CachedPrograms())
}

func TestProgramCacheDefaultBound(t *testing.T) {
	env, err := rules.NewEnv(rules.Options{})
	require.NoError(t, err)
	for i := range rules.DefaultCacheSize + 10 {
		_, err := env.Compile(fmt.Sprintf("%d > 0", i))
		require.NoError(t, err)
	}
	assert.Equal(t, rules.DefaultCacheSize, env.CachedPrograms())
}

// TestProgramCacheConcurrent compiles and evaluates from many goroutines through a cache smaller
// than the expressions in use, so that hits, adds and evictions interleave (run it with -race).
func TestProgramCacheConcurrent(t *testing.T) {
	env, err := rules.NewEnv(rules.Options{CacheSize: 4})
	require.NoError(t, err)
	declared := []drv1.Parameter{{Name: "replicas", Type: drv1.ParameterTypeInt}}
	vars := map[string]any{"params": map[string]any{"replicas": int64(5)}}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				n := (w + i) % 10
				p, err := env.CompileGuard(fmt.Sprintf("params.replicas >= %d", n), declared)
				if err != nil {
					t.Error(err)
					return
				}
				if ok, err := p.Eval(context.Background(), vars); err != nil || ok != (5 >= n) {
					t.Errorf("params.replicas >= %d with 5: %v, %v", n, ok, err)
				}
			}
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, env.CachedPrograms(), 4)
}

// TestTypedParamsCacheIsBounded: the environments typed from workflows' parameter declarations
// are kept under the same bound as the programs; one forgotten is built again when needed.
func TestTypedParamsCacheIsBounded(t *testing.T) {
	env, err := rules.NewEnv(rules.Options{CacheSize: 2})
	require.NoError(t, err)
	guard := func(param string) error {
		_, err := env.CompileGuard("params."+param+" > 0", []drv1.Parameter{{Name: param, Type: drv1.ParameterTypeInt}})
		return err
	}
	for _, p := range []string{"a", "b", "c"} {
		require.NoError(t, guard(p))
	}
	assert.Equal(t, 2, env.TypedEnvs())
	require.NoError(t, guard("a"), "a forgotten signature is typed again")
	_, err = env.CompileGuard("params.b > 'x'", []drv1.Parameter{{Name: "b", Type: drv1.ParameterTypeInt}})
	require.Error(t, err, "typed again (b was the least recently used), the parameter keeps its type")
	assert.Contains(t, err.Error(), "found no matching overload")
	assert.Equal(t, 2, env.TypedEnvs())
}
