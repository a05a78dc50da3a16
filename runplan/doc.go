// Package runplan plans a run before its first side effect: an Execute from its snapshot (every
// action rendered, parameters resolved), a Revert from its target's. Pure: it reads no API.
package runplan
