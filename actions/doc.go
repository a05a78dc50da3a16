// Package actions holds the controller's work queue (queue.go), the rendering of action
// templates, and, later, one runner per action type. Handlers enqueue keys, never objects;
// workers started by Run pull keys off the Queue and hand them to a runner, which only returns an
// error: the retry policy lives in Run alone.
package actions
