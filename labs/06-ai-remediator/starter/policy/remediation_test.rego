package opslab.plan_test

# TODO (task 5): tests that show each of your rules allowing and denying, e.g.
#   test_two_services_need_approval if { count(data.opslab.plan.needs_approval) > 0 with input as {...} }
