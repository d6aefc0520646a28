from bridge.run.cli import main

raise SystemExit(main())
