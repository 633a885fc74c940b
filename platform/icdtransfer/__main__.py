from icdtransfer.cli import main

raise SystemExit(main())
