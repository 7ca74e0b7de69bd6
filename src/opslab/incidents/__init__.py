"""Incidents: hidden faults a responder (a person or an agent) diagnoses and mitigates, scored alike."""
