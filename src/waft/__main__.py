from waft.cli.main import main

raise SystemExit(main())
