"""The SelfHealingApp operator (lab 2). Write it with kopf: see README.md.

Run it by hand against your platform:
    source .opslab/env
    kubectl apply -f labs/02-operator/starter/crd.yaml
    kopf run labs/02-operator/starter/shop_operator.py --standalone --namespace default
"""

from __future__ import annotations

from typing import Any

import kopf

GROUP, VERSION, PLURAL = "labs.opslab.dev", "v1alpha1", "selfhealingapps"


@kopf.on.create(GROUP, VERSION, PLURAL)
def created(spec: dict[str, Any], name: str, namespace: str, logger: kopf.Logger, **_: Any) -> None:
    # TODO task 2: create the Deployment, Service and PodDisruptionBudget, owned by the app
    # TODO task 3: report status.conditions (Ready, Progressing, Degraded) and observedGeneration
    logger.info(f"{namespace}/{name} wants {spec.get('replicas')} x {spec.get('image')}; nothing is done yet")


# TODO task 4: reconcile updates, and put back hand edits (drift) without writing when nothing differs
# TODO task 5: on errors, report Degraded and retry with a delay
# TODO task 6: a finalizer that removes the app from the ConfigMap selfhealingapp-registry
