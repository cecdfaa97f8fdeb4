"""The subscriber's self-service web page: log in with the desk phone's extension and SIP
password, "My Numbers" (the twin), "Manage Status" (where calls go, which status is current),
recent calls. Server-rendered (Starlette + Jinja2, served by uvicorn), no JavaScript needed.

Every rule is the service layer's (twinning.service), the same functions twinctl calls; this
package adds only what a web page needs: sessions, CSRF, lock-outs (auth.py) and the pages
(app.py). Only twinctl's stack code starts it; nothing else imports it but the tests.
"""
