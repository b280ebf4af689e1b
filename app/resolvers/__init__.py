"""Resolvers behind the GraphQL schema (they call the client modules, never Kubernetes
or the database directly).  Filled in by the API issue."""
