"""End-to-end tests: our spans in a real MLflow tracking server and on MLflow's OTLP path."""
