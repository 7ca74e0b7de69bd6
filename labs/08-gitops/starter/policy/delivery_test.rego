package delivery_test

import rego.v1

import data.delivery

# TODO: tests that a good release passes and each kind of bad one is denied (opa test policy/).
