"""The web dashboard: server-rendered pages for sales teams, served by the API app."""
