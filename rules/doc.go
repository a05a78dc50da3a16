// Package rules takes the decisions as CEL: one environment per process with a bounded cache of
// compiled programs, the built-in rules (StageReady, StageBlocked, PlanLock, RevertEligible) and
// users' guards, the stage DAG, what a run does next (Advance), and parameters with their
// layering. It is pure: it reads no API and imports no client-go.
package rules
