from chatmesh.cli.main import main

raise SystemExit(main())
