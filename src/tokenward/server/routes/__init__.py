"""The HTTP routes of the authorization server, one module per group of endpoints; the
infrastructure they share (runtime, dependencies, errors, middleware, settings) is the
parent package."""
