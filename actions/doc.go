// Package actions holds the controller's work queue (queue.go) and one runner per action type;
// actions reach a runner rendered already (package templates). Handlers enqueue keys, never
// objects; workers started by Run pull keys off the Queue and hand them to a runner, which only
// returns an error: the retry policy lives in Run alone.
package actions
