package rules

// CachedPrograms is the number of compiled programs e keeps, for the tests of its bound.
func (e *Env) CachedPrograms() int { return e.programs.len() }
