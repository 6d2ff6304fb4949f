"""The fast lane: requests whose shape the engine has planned are decided in compiled code.

Most requests a shop serves repeat something the engine has already judged: the same browser
(its header names, order and values), from the same address, on the same kind of page. The
Python engine judges such a request once and leaves a *plan* behind (plan.py): the findings of
the signals that read only the shape and the address, the verdict they lead to while the
windows stay quiet, and the window rows the request observes. The C extension (_lane.c) then
answers the requests of that plan by itself: it reads the scope, resolves the client address,
fills in the product id and session cookie, runs the window kernel through its C entry point
and checks the traffic signal's triggers. Anything new or unusual - and every request whose
windows cross a trigger - goes back to the Python path, which stays the reference: the tests
hold the two to the same decisions and the same windows (tests/fastlane/).

lane.py builds the lane for a middleware and keeps it in step with the engine (switches,
network databases, metrics). Without a C compiler at install time there is no lane, and every
request takes the Python path.
"""
