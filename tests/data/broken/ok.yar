rule Fine_Rule { strings: $a = "fine" condition: $a }
