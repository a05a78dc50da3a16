package runplan

// GzipOverhead is gzipOverhead, for the tests.
var GzipOverhead = gzipOverhead
