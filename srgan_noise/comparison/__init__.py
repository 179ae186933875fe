"""`srgan compare`: stabilisation schedules trained side by side, on SR and on
the toy mixtures, with tables and figures; it runs training and evaluation both."""
