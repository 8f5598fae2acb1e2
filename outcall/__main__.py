from outcall.cli import main

raise SystemExit(main())
