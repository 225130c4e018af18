# tests/server/ - tfab serve against real clients (curl, raw sockets, the openai npm package,
# headless Chromium), each test one server on a free port and a Unix socket in a temp directory.
tfab_script_test(unit_serve_api unit 120 server/t_serve_api.sh)
tfab_script_test(unit_serve_load unit 120 server/t_serve_load.sh)
tfab_script_test(unit_serve_config unit 60 server/t_serve_config.sh)
tfab_script_test(unit_serve_openai unit 300 server/t_serve_openai.sh)
tfab_script_test(unit_serve_dashboard unit 120 server/t_serve_dashboard.sh)
