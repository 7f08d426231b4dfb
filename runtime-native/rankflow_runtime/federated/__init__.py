"""Federated LoRA building blocks (pure functions; the procedure that runs rounds is `procedures/lora_fair.py`).

* `partition`: which training examples each simulated client holds (IID, Dirichlet label skew, feature shift by
  domain, feature shift plus label skew).
* `sampling`: which clients take part in a round.
* `aggregate`: the server side, side by side: FedIT (average A and B), FLoRA-style exact aggregation with
  re-initialisation, and LoRA-FAIR's correction ΔB of the averaged B; the aggregation error and similarity.
"""
