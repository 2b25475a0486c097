"""Federated pretraining with Flower (FedVSSL / FedAvg).

Modules (imported on demand; this package import pulls in neither Flower nor JAX):
  aggregate      pure NumPy aggregation rules (fedvssl_aggregate, fedavg_aggregate, flower_baseline_aggregate)
  arrays         flat {pytree path: float32 array} dicts <-> nested pytrees / Flower ArrayRecords, backbone merge
  local_trainer  the LocalTrainer contract, LOCAL_TRAINERS registry, run-config -> ConfigDict helpers
  toy            a tiny deterministic NumPy trainer ("toy") + its config, for tests and demos
  client_state   per-client persistent local models (Orbax) under <workdir>/clients/
  server_state   resumable server state under <workdir>/server/, final global model
  strategy       FedVSSLStrategy (flwr.serverapp.strategy.FedAvg subclass)
  client_app     Flower ClientApp (`app`, make_client_app)
  server_app     Flower ServerApp (`app`, make_server_app, run_server)
  simulation     run_simulation(config, workdir): in-process simulation (config.runner = "federated")
See docs/federated.md.
"""
