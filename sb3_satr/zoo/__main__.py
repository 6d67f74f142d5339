"""``python -m sb3_satr.zoo COMMAND ...``: see :func:`sb3_satr.zoo.main`."""

from sb3_satr.zoo import main

main()
