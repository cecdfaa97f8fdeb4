"""Call routing for the twinning service: pure decision modules plus a thin KEMI adapter."""
