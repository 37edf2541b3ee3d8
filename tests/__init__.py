"""prefloop tests: a package, so that tests/data, tests/app, ... never shadow the real packages."""
