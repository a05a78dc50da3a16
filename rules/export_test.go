package rules

// CachedPrograms is the number of compiled programs e keeps, for the tests of its bound.
func (e *Env) CachedPrograms() int { return e.programs.Len() }

// TypedEnvs is the number of environments typed from parameter declarations that e keeps.
func (e *Env) TypedEnvs() int { return e.typed.Len() }
