"""The HTTP edge: the ASGI app and the layers every request passes before and after the SCIM
endpoints (``app``): forwarded headers, the Host check, the access log and metrics
(``observe``), request bodies (``body``), liveness and readiness (``readiness``)
(docs/design/layers.md)."""
