// Package templates is the templating of actions: parsing, the names and functions a template may
// use, rendering, and the reading of the manifests they render to; validation and actions share it.
package templates
